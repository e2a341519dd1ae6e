"""Provider simulator: an OpenAI-compatible HTTP server standing in for LLM providers.

It serves several regions under their own base paths, each with a latency model and fault
injection (errors, 429s, hangs, outages), answers from scripted rules or deterministic synthetic
prose, and in replay mode serves RouterBench's recorded real answers with their real cost. It is
the mesh's embedded default upstream, the integration tests' provider, and how teams project
savings on their own traffic before going live.
"""

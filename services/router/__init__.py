"""Router: the entry RPC. Admits the request, asks the cache, compresses long prompts, then runs
the tier cascade: the cheapest tier first, quality gates on its answer, escalation only when a
gate fails. Every response carries its per-stage cost and what it saved against the baseline.
"""

"""The semantic cache: answers a request from earlier accepted answers, without a model call.

Lookups try an exact match first (a hash of the canonical request) and then a semantic one:
the last user turn is embedded with all-MiniLM-L6-v2 (on ONNX Runtime) and compared by cosine
similarity with the entries of the request's namespace, which holds only entries whose tenant,
model class, sampling parameters, response format and earlier turns are identical. Entries are
written through to a durable entry store (SQLite by default, or Redis shared by replicas),
expire after a TTL, and are evicted least recently used past global entry and byte bounds.
"""

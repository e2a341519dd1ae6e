"""The semantic cache: answers a request from earlier accepted answers, without a model call.

Lookups try an exact match first (a hash of the canonical request) and then a semantic one:
the last user turn is embedded with all-MiniLM-L6-v2 and compared by cosine similarity with the
entries of the request's namespace, which holds only entries whose tenant, model class, sampling
parameters and earlier turns are identical. Entries expire after a TTL and each namespace keeps
a bounded number of them, evicting the least recently used.
"""

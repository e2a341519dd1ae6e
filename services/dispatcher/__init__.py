"""Regional dispatcher: sends model calls to OpenAI-compatible providers across regions.

It picks endpoints by power of two choices on their latency, preferring the caller's region;
hedges calls with no first token by the endpoint's p95; fails over on errors before the first
token under a retry budget; ejects outlier endpoints; and honours Retry-After and the caller's
deadline, so one region's outage or slow tail never fails a request.
"""

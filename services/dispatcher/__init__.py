"""Regional dispatcher: sends model calls to OpenAI-compatible providers across regions.

It keeps per-endpoint latency percentiles, tries the caller's region first, and fails over to the
next region on errors and timeouts, so one region's outage never fails a request.
"""

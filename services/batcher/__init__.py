"""Batcher: coalesces identical in-flight model calls so they cost one upstream call.

Later stages add packing of small requests and provider Batch API jobs; singleflight is the
first and cheapest saving: N identical concurrent requests, one upstream call, N answers.
"""

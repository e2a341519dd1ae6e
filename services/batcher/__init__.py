"""Batcher: makes model calls cheaper on their way to the dispatcher, three ways.

Singleflight shares one upstream call among identical calls in flight (the router routes calls
to batcher replicas by hash, so identical calls meet in one replica). Packing sends small calls
that share a long system prompt as one upstream call, when the calls allow it. Batch API jobs
run deferrable calls at the provider's batch price, from a durable job store.
"""

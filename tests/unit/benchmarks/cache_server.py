"""A cache service for the benchmarks' synchronous suites, without a model or a process.

`threaded_cache` is a `benchmarks.cache_service.CacheService`: given SLUICE_CACHE_* settings it
builds what `python -m services.cache` builds (the store, the verifier they name, the cache at
their cosine threshold, the gRPC server), over a hashing embedder, and serves it from its own
event loop in a thread, because the suites call asyncio.run themselves.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry.sdk.trace import TracerProvider

from benchmarks.cache_service import BENCH_ENV
from services.cache.cache import SemanticCache
from services.cache.config import Settings
from services.cache.server import build_cache, build_server, build_store, load_verifier
from shared.embedding.minilm import EmbeddingBatcher
from shared.grpc_server import HostedServer
from shared.telemetry import Telemetry
from tests.unit.cache.fakes import HashingEmbedder

T = TypeVar("T")


@contextmanager
def threaded_cache(env: Mapping[str, str]) -> Iterator[str]:
    settings = Settings.from_env({**BENCH_ENV, **env, "SLUICE_CACHE_LISTEN": "127.0.0.1:0"})
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=120)

    async def start() -> tuple[SemanticCache, HostedServer]:
        store = build_store(settings)
        await store.open()
        batcher = EmbeddingBatcher(HashingEmbedder())
        cache = build_cache(settings, batcher, store, load_verifier(settings))
        await cache.start()
        hosted = build_server(settings, cache, Telemetry(TracerProvider()))
        await hosted.server.start()
        return cache, hosted

    cache, hosted = run(start())
    try:
        yield f"127.0.0.1:{hosted.port}"
    finally:
        run(hosted.server.stop(None))
        run(cache.aclose())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=60)
        loop.close()

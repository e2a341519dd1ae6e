"""Builds and serves the semantic cache."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc

from services.cache.adaptive import IndexPolicy
from services.cache.cache import CachePolicy, SemanticCache
from services.cache.config import Settings
from services.cache.embedder_check import reconcile
from services.cache.index import limit_faiss_threads
from services.cache.metrics import CacheMetrics
from services.cache.servicer import SemanticCacheServicer
from services.cache.store import EntryStore, MemoryStore, StoreCorrupt, StoreUnavailable
from services.cache.store_sqlite import SqliteStore
from services.cache.verifiers import build_verifier
from services.cache.verify import HitVerifier
from shared.embedding.minilm import EmbeddingBatcher, IdentifiedEmbedder, identity_of
from shared.embedding.onnx import build_minilm
from shared.grpc_server import HostedServer, build_grpc_server, run_until_terminated
from shared.log import configure_logging
from shared.metrics import MetricsEndpoint
from shared.settings import SettingsError
from shared.telemetry import Telemetry, init_telemetry

LOG = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SemanticCacheService"].full_name


def build_server(
    settings: Settings,
    cache: SemanticCache,
    telemetry: Telemetry,
    metrics: MetricsEndpoint | None = None,
) -> HostedServer:
    servicer = SemanticCacheServicer(cache)
    return build_grpc_server(
        settings.listen,
        [SERVICE_NAME],
        lambda server: pb_grpc.add_SemanticCacheServiceServicer_to_server(servicer, server),
        telemetry,
        metrics=metrics,
    )


def build_store(settings: Settings) -> EntryStore:
    if settings.store.kind == "sqlite":
        return SqliteStore(Path(settings.store.location), sync=settings.sqlite_sync)
    if settings.store.kind == "redis":
        # Imported here: the redis client costs ~10 MB of RSS in a cache that does not use it.
        from services.cache.store_redis import RedisStore

        return RedisStore(settings.store.location)
    return MemoryStore()


def build_embedder(settings: Settings) -> IdentifiedEmbedder:
    return build_minilm(
        settings.embed_backend,
        settings.model_dir,
        threads=settings.embed_threads,
        variant=settings.embed_variant,
    )


def build_cache(
    settings: Settings,
    batcher: EmbeddingBatcher,
    store: EntryStore,
    verifier: HitVerifier | None = None,
    metrics: CacheMetrics | None = None,
) -> SemanticCache:
    policy = CachePolicy(
        min_similarity=settings.min_similarity,
        ttl_s=settings.ttl_s,
        max_entries=settings.max_entries,
        max_bytes=settings.max_bytes,
        index=IndexPolicy(ann_threshold=settings.ann_threshold),
    )
    return SemanticCache(batcher, policy, store=store, verifier=verifier, metrics=metrics)


def load_verifier(settings: Settings) -> HitVerifier:
    """The configured verifier; a model file that is missing or unusable stops the start with
    a message naming the variable and the file (never a quiet fall-back to bare cosine)."""
    variable = "SLUICE_CACHE_VERIFIER_MODEL"
    if settings.verify in ("crossenc", "guarded", "banded"):
        variable = "SLUICE_CACHE_CROSSENC_MODEL"
    try:
        return build_verifier(settings.verify, settings.verifier_model, settings.crossenc_model)
    except (OSError, ValueError) as error:
        raise SettingsError(f"{variable}: {error}") from None


async def serve(settings: Settings) -> None:
    configure_logging("cache", settings.log_level)
    telemetry = init_telemetry("sluice-cache")
    metrics = MetricsEndpoint(settings.metrics_listen)
    limit_faiss_threads()
    embedder = build_embedder(settings)
    batcher = EmbeddingBatcher(embedder)
    store = build_store(settings)
    try:
        # Before the port opens: a store that cannot be used stops the process with one line
        # naming it, instead of a server that never turns SERVING.
        await store.open()
    except (StoreCorrupt, StoreUnavailable) as error:
        raise SystemExit(f"cache cannot start: {error}") from None
    verifier = load_verifier(settings)
    cache = build_cache(settings, batcher, store, verifier, CacheMetrics(metrics.registry))
    hosted = build_server(settings, cache, telemetry, metrics)

    async def start() -> None:
        # Health stays NOT_SERVING (and RPCs answer UNAVAILABLE) until both the model and
        # every stored entry are loaded. The model first: which embedder serves (the ONNX
        # export or its fallback) decides whether the stored vectors can be used as they are.
        await asyncio.to_thread(embedder.load)
        identity = identity_of(embedder)
        LOG.info("embedding with %s", identity)
        await reconcile(store, identity, settings.embedder_mismatch, embedder.embed, embedder.dim)
        await cache.start()

    async def stop() -> None:
        await batcher.aclose()
        await cache.aclose()

    try:
        await run_until_terminated(
            hosted, name="cache", start=start, stop=stop, telemetry=telemetry
        )
    except StoreCorrupt as error:
        raise SystemExit(f"cache cannot start: {error}") from None

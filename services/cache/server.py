"""Builds and serves the semantic cache."""

from __future__ import annotations

import asyncio

from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc

from services.cache.cache import CachePolicy, SemanticCache
from services.cache.config import Settings
from services.cache.embedder import EmbeddingBatcher, MiniLmEmbedder
from services.cache.index import limit_faiss_threads
from services.cache.servicer import SemanticCacheServicer
from shared.grpc_server import HostedServer, build_grpc_server, run_until_terminated
from shared.log import configure_logging
from shared.telemetry import Telemetry, init_telemetry

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SemanticCacheService"].full_name


def build_server(settings: Settings, cache: SemanticCache, telemetry: Telemetry) -> HostedServer:
    servicer = SemanticCacheServicer(cache)
    return build_grpc_server(
        settings.listen,
        [SERVICE_NAME],
        lambda server: pb_grpc.add_SemanticCacheServiceServicer_to_server(servicer, server),
        telemetry,
    )


def build_cache(settings: Settings, batcher: EmbeddingBatcher) -> SemanticCache:
    policy = CachePolicy(
        min_similarity=settings.min_similarity,
        ttl_s=settings.ttl_s,
        max_entries=settings.max_entries,
    )
    return SemanticCache(batcher, policy)


async def serve(settings: Settings) -> None:
    configure_logging("cache", settings.log_level)
    telemetry = init_telemetry("sluice-cache")
    limit_faiss_threads()
    embedder = MiniLmEmbedder(threads=settings.embed_threads)
    batcher = EmbeddingBatcher(embedder)
    hosted = build_server(settings, build_cache(settings, batcher), telemetry)

    async def load_model() -> None:
        # Blocking for ~5 s (mostly the sentence-transformers import); health stays
        # NOT_SERVING meanwhile and RPCs answer UNAVAILABLE.
        await asyncio.to_thread(embedder.load)

    await run_until_terminated(
        hosted, name="cache", start=load_model, stop=batcher.aclose, telemetry=telemetry
    )

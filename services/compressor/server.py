"""Wires the compressor together and serves it until SIGTERM.

The embedding model loads in `start`, after the port is open and while health still answers
NOT_SERVING, so a Kubernetes startup probe sees a live process that is not ready yet. The
dispatcher channel, for abstractive summaries, is opened lazily by gRPC: a dispatcher that is
down only makes the abstractive strategy fall back to extraction.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping

import grpc
import sluice.compressor.v1.compressor_service_pb2 as compressor_pb2
import sluice.compressor.v1.compressor_service_pb2_grpc as compressor_grpc
from sluice.dispatcher.v1 import dispatcher_service_pb2_grpc as dispatcher_grpc

from services.compressor.abstractive import AbstractiveStrategy, Summariser
from services.compressor.compressor import Compressor, Options
from services.compressor.config import Settings
from services.compressor.dedup import DedupStrategy
from services.compressor.embedder import Embedder, build_embedder
from services.compressor.history import HistoryStrategy
from services.compressor.servicer import PromptCompressorServicer
from services.compressor.strategies import ExtractiveStrategy
from services.compressor.summariser import DispatcherSummariser
from shared.grpc_client import open_channel
from shared.grpc_server import HostedServer, build_grpc_server, run_until_terminated
from shared.log import configure_logging
from shared.metrics import MetricsEndpoint
from shared.pricing import load_catalogue
from shared.settings import SettingsError
from shared.telemetry import Telemetry, init_telemetry
from shared.tokens import TokenCounter

NAME = "sluice-compressor"
SERVICE_NAME = compressor_pb2.DESCRIPTOR.services_by_name["PromptCompressorService"].full_name


def build_compressor(
    settings: Settings, embedder: Embedder, summariser: Summariser | None = None
) -> Compressor:
    # Loaded by the first Compress call, in its counting thread (~0.3-0.8 s, once): the router
    # sends only prompts of at least min_tokens bytes, so a mesh whose prompts are all short
    # never makes the compressor hold the encoding (~30 MB with tiktoken's module).
    counter = TokenCounter(lazy=True)
    extractive = ExtractiveStrategy(embedder, counter)
    abstractive = (
        None if summariser is None else AbstractiveStrategy(summariser, extractive, counter)
    )
    options = Options(
        min_tokens=settings.min_tokens,
        default_ratio=settings.target_ratio,
        catalogue=load_catalogue(settings.catalogue_file),
        compute_nano_usd_per_token=settings.extractive_nano_usd_per_token,
        keep_last_turns=settings.keep_last_turns,
        dedup=DedupStrategy(),
        abstractive=abstractive,
        history=HistoryStrategy(extractive, counter, summariser),
    )
    return Compressor(extractive, counter, options)


def build_server(
    settings: Settings,
    compressor: Compressor,
    telemetry: Telemetry,
    metrics: MetricsEndpoint | None = None,
) -> HostedServer:
    servicer = PromptCompressorServicer(compressor)

    def register(server: grpc.aio.Server) -> None:
        compressor_grpc.add_PromptCompressorServiceServicer_to_server(servicer, server)

    return build_grpc_server(settings.listen, [SERVICE_NAME], register, telemetry, metrics=metrics)


async def serve(settings: Settings) -> None:
    configure_logging(NAME, settings.log_level)
    telemetry = init_telemetry(NAME)
    embedder = build_embedder(
        settings.embed_backend,
        settings.model_dir,
        threads=settings.embed_threads,
        cache_size=settings.embed_cache_size,
        variant=settings.embed_variant,
    )
    channel = (
        open_channel(settings.dispatcher_addr, telemetry) if settings.dispatcher_addr else None
    )
    summariser = (
        None
        if channel is None
        else DispatcherSummariser(
            dispatcher_grpc.RegionalDispatcherServiceStub(channel),
            settings.summary_model,
        )
    )
    metrics = MetricsEndpoint(settings.metrics_listen)
    compressor = build_compressor(settings, embedder, summariser)
    hosted = build_server(settings, compressor, telemetry, metrics)

    async def load_model() -> None:
        await asyncio.to_thread(embedder.load)

    async def close() -> None:
        if channel is not None:
            await channel.close()

    await run_until_terminated(hosted, name=NAME, start=load_model, stop=close, telemetry=telemetry)


def main(env: Mapping[str, str] = os.environ) -> int:
    """Entry point: exit status 2 on bad settings, 0 after a graceful shutdown."""
    try:
        settings = Settings.from_env(env)
    except SettingsError as error:
        print(f"{NAME}: {error}", file=sys.stderr)
        return 2
    asyncio.run(serve(settings))
    return 0

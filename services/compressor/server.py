"""Wires the compressor together and serves it until SIGTERM.

The embedding model loads in `start`, after the port is open and while health still answers
NOT_SERVING, so a Kubernetes startup probe sees a live process that is not ready yet.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping

import grpc
import sluice.compressor.v1.compressor_service_pb2 as compressor_pb2
import sluice.compressor.v1.compressor_service_pb2_grpc as compressor_grpc

from services.compressor.compressor import Compressor
from services.compressor.config import Settings
from services.compressor.embedder import CachedEmbedder, Embedder, MiniLmEmbedder
from services.compressor.servicer import PromptCompressorServicer
from services.compressor.strategies import ExtractiveStrategy
from shared.grpc_server import HostedServer, build_grpc_server, run_until_terminated
from shared.log import configure_logging
from shared.pricing import load_catalogue
from shared.settings import SettingsError
from shared.telemetry import Telemetry, init_telemetry
from shared.tokens import TokenCounter

NAME = "sluice-compressor"
SERVICE_NAME = compressor_pb2.DESCRIPTOR.services_by_name["PromptCompressorService"].full_name


def build_compressor(settings: Settings, embedder: Embedder) -> Compressor:
    counter = TokenCounter()
    return Compressor(
        ExtractiveStrategy(embedder, counter),
        counter,
        min_tokens=settings.min_tokens,
        default_ratio=settings.target_ratio,
        catalogue=load_catalogue(settings.catalogue_file),
    )


def build_server(settings: Settings, compressor: Compressor, telemetry: Telemetry) -> HostedServer:
    servicer = PromptCompressorServicer(compressor)

    def register(server: grpc.aio.Server) -> None:
        compressor_grpc.add_PromptCompressorServiceServicer_to_server(servicer, server)

    return build_grpc_server(settings.listen, [SERVICE_NAME], register, telemetry)


async def serve(settings: Settings) -> None:
    configure_logging(NAME, settings.log_level)
    telemetry = init_telemetry(NAME)
    embedder = CachedEmbedder(
        MiniLmEmbedder(threads=settings.embed_threads), settings.embed_cache_size
    )
    hosted = build_server(settings, build_compressor(settings, embedder), telemetry)

    async def load_model() -> None:
        await asyncio.to_thread(embedder.load)

    await run_until_terminated(hosted, name=NAME, start=load_model, telemetry=telemetry)


def main(env: Mapping[str, str] = os.environ) -> int:
    """Entry point: exit status 2 on bad settings, 0 after a graceful shutdown."""
    try:
        settings = Settings.from_env(env)
    except SettingsError as error:
        print(f"{NAME}: {error}", file=sys.stderr)
        return 2
    asyncio.run(serve(settings))
    return 0

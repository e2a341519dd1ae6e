"""Builds and serves the batcher."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry import trace
from sluice.batcher.v1 import batcher_service_pb2 as pb
from sluice.batcher.v1 import batcher_service_pb2_grpc as pb_grpc
from sluice.dispatcher.v1 import dispatcher_service_pb2_grpc as dispatcher_grpc

from services.batcher.config import Settings
from services.batcher.executor import Executed, Executor
from services.batcher.flush_policy import FlushPolicy
from services.batcher.job_runner import JobRunner, RunnerTiming
from services.batcher.jobs import Price
from services.batcher.metrics import BatcherMetrics
from services.batcher.packer import Packer
from services.batcher.provider_batches import BatchProvider, EndpointTable, OpenAIBatchClient
from services.batcher.servicer import BatcherServicer
from services.batcher.singleflight import Singleflight
from services.batcher.store import JobStore, SqliteJobStore
from services.batcher.upstream import DispatcherUpstream
from services.dispatcher.endpoints import load_endpoints
from shared.grpc_client import open_channel
from shared.grpc_server import HostedServer, build_grpc_server, run_until_terminated
from shared.log import configure_logging
from shared.metrics import MetricsEndpoint
from shared.pricing import PriceCatalogue, TokenUsage, load_catalogue
from shared.settings import SettingsError
from shared.telemetry import Telemetry, init_telemetry
from shared.tokens import TokenCounter

if TYPE_CHECKING:
    import httpx

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BatcherService"].full_name
# Batch API calls are small JSON requests and file transfers; a slow one is a broken one.
_PROVIDER_TIMEOUT_S = 60.0
_PROVIDER_CONNECT_TIMEOUT_S = 5.0


class ProviderHttp:
    """The Batch API's traced httpx client, made on first use: only jobs sent to a provider
    need it, and httpx with its OpenTelemetry instrumentation costs ~16 MB of RSS."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self._client: httpx.AsyncClient | None = None

    def __call__(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx
            from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport

            transport = AsyncOpenTelemetryTransport(
                httpx.AsyncHTTPTransport(), tracer_provider=self._telemetry.provider
            )
            timeout = httpx.Timeout(_PROVIDER_TIMEOUT_S, connect=_PROVIDER_CONNECT_TIMEOUT_S)
            self._client = httpx.AsyncClient(transport=transport, timeout=timeout)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


@dataclass(frozen=True)
class Deps:
    """What the batcher talks to; tests pass fakes."""

    dispatcher: dispatcher_grpc.RegionalDispatcherServiceAsyncStub
    store: JobStore
    provider: BatchProvider
    endpoints: EndpointTable
    price: Price
    tokens: TokenCounter
    tracer: trace.Tracer


def catalogue_price(catalogue: PriceCatalogue) -> Price:
    def price(model: str, region: str, usage: TokenUsage, batch: bool) -> int:
        if not catalogue.knows(model):
            return 0  # an unpriced model's answer is still delivered, just not costed
        return catalogue.price(model, region).cost_nano_usd(usage, batch=batch)

    return price


def build_servicer(
    settings: Settings, deps: Deps, metrics: BatcherMetrics | None = None
) -> tuple[BatcherServicer, JobRunner]:
    pack = settings.pack
    upstream = DispatcherUpstream(deps.dispatcher, deps.tracer)
    packer = Packer(
        FlushPolicy(pack.window_s, pack.max_items, pack.reserve_s),
        upstream.send_packed,
        deps.tokens,
    )
    executor = Executor(
        upstream, Singleflight[Executed](), packer, deps.tokens, pack.min_system_tokens, metrics
    )
    runner = JobRunner(
        deps.store,
        deps.provider,
        deps.endpoints,
        deps.price,
        RunnerTiming(settings.jobs.poll_interval_s, settings.jobs.max_backoff_s),
    )
    servicer = BatcherServicer(executor, runner, deps.endpoints, settings.dispatcher_addr)
    return servicer, runner


def open_store(data_dir: Path) -> SqliteJobStore:
    try:
        return SqliteJobStore(data_dir)
    except (OSError, sqlite3.Error) as error:
        raise SettingsError(
            f"SLUICE_BATCHER_DATA_DIR={str(data_dir)!r}: cannot open the job store: {error}"
        ) from None


def build_server(
    settings: Settings,
    servicer: BatcherServicer,
    telemetry: Telemetry,
    metrics: MetricsEndpoint | None = None,
) -> HostedServer:
    return build_grpc_server(
        settings.listen,
        [SERVICE_NAME],
        lambda server: pb_grpc.add_BatcherServiceServicer_to_server(servicer, server),
        telemetry,
        metrics=metrics,
    )


async def serve(settings: Settings) -> None:
    configure_logging("batcher", settings.log_level)
    telemetry = init_telemetry("sluice-batcher")
    metrics = MetricsEndpoint(settings.metrics_listen)
    jobs = settings.jobs
    endpoints = EndpointTable(load_endpoints(jobs.endpoints_file), jobs.region)
    channel = open_channel(settings.dispatcher_addr, telemetry)
    http = ProviderHttp(telemetry)
    store = open_store(jobs.data_dir)
    deps = Deps(
        dispatcher=dispatcher_grpc.RegionalDispatcherServiceStub(channel),
        store=store,
        provider=OpenAIBatchClient(http),
        endpoints=endpoints,
        price=catalogue_price(load_catalogue(jobs.catalogue_file)),
        # Counted only for packable calls with a system prompt: loaded then, if ever (~45 MB).
        tokens=TokenCounter(lazy=True),
        tracer=telemetry.tracer("sluice.batcher"),
    )
    servicer, runner = build_servicer(settings, deps, BatcherMetrics(metrics.registry))

    async def start() -> None:
        runner.start()

    async def close() -> None:
        await runner.close()
        await http.aclose()
        await channel.close()
        store.close()

    hosted = build_server(settings, servicer, telemetry, metrics)
    await run_until_terminated(hosted, name="batcher", start=start, stop=close, telemetry=telemetry)

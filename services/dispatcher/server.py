"""Builds and serves the dispatcher."""

from __future__ import annotations

import httpx
from opentelemetry.instrumentation.httpx import AsyncOpenTelemetryTransport
from sluice.dispatcher.v1 import dispatcher_service_pb2 as pb
from sluice.dispatcher.v1 import dispatcher_service_pb2_grpc as pb_grpc

from services.dispatcher.config import Settings
from services.dispatcher.dispatcher import Dispatcher
from services.dispatcher.endpoints import load_endpoints
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.providers.anthropic import AnthropicMessagesClient
from services.dispatcher.providers.openai import OpenAICompatibleClient
from services.dispatcher.providers.select import ByProvider
from services.dispatcher.servicer import DispatcherServicer
from shared.grpc_server import HostedServer, build_grpc_server, run_until_terminated
from shared.log import configure_logging
from shared.metrics import MetricsEndpoint
from shared.pricing import load_catalogue
from shared.telemetry import Telemetry, init_telemetry
from shared.tokens import TokenCounter

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RegionalDispatcherService"].full_name


def build_http_client(telemetry: Telemetry | None, *, http2: bool = True) -> httpx.AsyncClient:
    """One pooled client for every upstream; each HTTP call is traced as a child span.

    With http2, TLS upstreams that offer h2 by ALPN get one multiplexed connection per host
    instead of one connection per concurrent call; cleartext upstreams (the simulator, a local
    llama.cpp server) stay on HTTP/1.1 keep-alive, since h2c needs prior knowledge.
    """
    base = httpx.AsyncHTTPTransport(
        http2=http2, limits=httpx.Limits(max_connections=256, max_keepalive_connections=64)
    )
    if telemetry is None:
        return httpx.AsyncClient(transport=base)
    transport = AsyncOpenTelemetryTransport(base, tracer_provider=telemetry.provider)
    return httpx.AsyncClient(transport=transport)


def build_dispatcher(
    settings: Settings,
    http: httpx.AsyncClient,
    telemetry: Telemetry,
    metrics: DispatcherMetrics | None = None,
) -> Dispatcher:
    # Counting is needed only when a provider reports no usage: loaded then, if ever (~45 MB).
    tokens = TokenCounter(lazy=True)
    return Dispatcher(
        load_endpoints(settings.endpoints_file),
        ByProvider(OpenAICompatibleClient(http, tokens), AnthropicMessagesClient(http, tokens)),
        load_catalogue(settings.catalogue_file),
        telemetry.tracer("sluice.dispatcher"),
        settings.policy,
        metrics=metrics,
    )


def build_server(
    settings: Settings,
    dispatcher: Dispatcher,
    telemetry: Telemetry,
    metrics: MetricsEndpoint | None = None,
) -> HostedServer:
    return build_grpc_server(
        settings.listen,
        [SERVICE_NAME],
        lambda server: pb_grpc.add_RegionalDispatcherServiceServicer_to_server(
            DispatcherServicer(dispatcher), server
        ),
        telemetry,
        metrics=metrics,
    )


async def serve(settings: Settings) -> None:
    configure_logging("dispatcher", settings.log_level)
    telemetry = init_telemetry("sluice-dispatcher")
    metrics = MetricsEndpoint(settings.metrics_listen)
    http = build_http_client(telemetry, http2=settings.http2)
    dispatcher = build_dispatcher(settings, http, telemetry, DispatcherMetrics(metrics.registry))
    hosted = build_server(settings, dispatcher, telemetry, metrics)
    await run_until_terminated(hosted, name="dispatcher", stop=http.aclose, telemetry=telemetry)

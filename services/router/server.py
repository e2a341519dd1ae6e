"""Builds and serves the router."""

from __future__ import annotations

import grpc
from sluice.cache.v1 import cache_service_pb2_grpc as cache_grpc
from sluice.compressor.v1 import compressor_service_pb2_grpc as compressor_grpc
from sluice.dispatcher.v1 import dispatcher_service_pb2_grpc as dispatcher_grpc
from sluice.router.v1 import router_service_pb2 as pb
from sluice.router.v1 import router_service_pb2_grpc as pb_grpc
from sluice.router.v1 import spend_service_pb2_grpc as spend_grpc

from services.router.admission import Admission
from services.router.budgets import InMemoryLedger
from services.router.cascade import Cascade
from services.router.clients import BatcherReplicas, CacheClient, CompressorClient, ModelClient
from services.router.config import Settings
from services.router.http_api import FrontDoor, HttpServer, build_http_app
from services.router.pipeline import Pipeline, prompt_cost_estimator
from services.router.policy import PolicyError, load_policy
from services.router.rollout import PolicySelector, Rollout, parse_rollout_spec
from services.router.servicer import RouterServicer
from services.router.spend_servicer import SERVICE_NAME as SPEND_SERVICE_NAME
from services.router.spend_servicer import SpendServicer
from shared.grpc_client import open_channel
from shared.grpc_server import HostedServer, build_grpc_server, run_until_terminated
from shared.log import configure_logging
from shared.pricing import PriceCatalogue, load_catalogue
from shared.telemetry import Telemetry, init_telemetry
from shared.tokens import TokenCounter

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RouterService"].full_name


def build_server(
    settings: Settings, servicer: RouterServicer, spend: SpendServicer, telemetry: Telemetry
) -> HostedServer:
    def register(server: grpc.aio.Server) -> None:
        pb_grpc.add_RouterServiceServicer_to_server(servicer, server)
        spend_grpc.add_SpendServiceServicer_to_server(spend, server)

    return build_grpc_server(
        settings.listen, [SERVICE_NAME, SPEND_SERVICE_NAME], register, telemetry
    )


def build_selector(settings: Settings, catalogue: PriceCatalogue) -> PolicySelector:
    """The live policy, plus the candidate being rolled out beside it, if any."""
    primary = load_policy(settings.policy_file, catalogue)
    spec = parse_rollout_spec(settings.rollout)
    if spec is None or settings.candidate_policy_file is None:
        if spec is not None:
            raise PolicyError(
                "SLUICE_ROUTER_ROLLOUT is set but SLUICE_ROUTER_CANDIDATE_POLICY is not"
            )
        return PolicySelector(primary)
    candidate = load_policy(settings.candidate_policy_file, catalogue)
    return PolicySelector(primary, Rollout(candidate, spec[0], spec[1]))


def open_peer_channels(settings: Settings, telemetry: Telemetry) -> dict[str, grpc.aio.Channel]:
    """One long-lived channel per downstream service (the batcher's are in BatcherReplicas)."""
    addresses = {
        "cache": settings.cache_addr,
        "compressor": settings.compressor_addr,
        "dispatcher": settings.dispatcher_addr,
    }
    return {name: open_channel(address, telemetry) for name, address in addresses.items()}


def build_pipeline(
    settings: Settings,
    telemetry: Telemetry,
    channels: dict[str, grpc.aio.Channel],
    batchers: BatcherReplicas,
    catalogue: PriceCatalogue,
    tokens: TokenCounter,
    ledger: InMemoryLedger,
) -> Pipeline:
    """The request path wired to the other services' stubs."""
    models = ModelClient(
        batchers,
        dispatcher_grpc.RegionalDispatcherServiceStub(channels["dispatcher"]),
        settings.dispatcher_addr,
    )
    return Pipeline(
        CacheClient(
            cache_grpc.SemanticCacheServiceStub(channels["cache"]), settings.cache_timeout_s
        ),
        CompressorClient(
            compressor_grpc.PromptCompressorServiceStub(channels["compressor"]),
            settings.compressor_timeout_s,
        ),
        Cascade(
            models, telemetry.tracer("sluice.router"), prompt_cost_estimator(catalogue, tokens)
        ),
        catalogue,
        tokens,
        ledger,
    )


async def serve(settings: Settings) -> None:
    configure_logging("router", settings.log_level)
    telemetry = init_telemetry("sluice-router")
    catalogue = load_catalogue(settings.catalogue_file)
    selector = build_selector(settings, catalogue)
    ledger = InMemoryLedger()
    tokens = TokenCounter()
    channels = open_peer_channels(settings, telemetry)
    # Calls are routed to batcher replicas by hash, so identical calls share one flight.
    batchers = BatcherReplicas(settings.batcher_addr, lambda a: open_channel(a, telemetry))
    pipeline = build_pipeline(settings, telemetry, channels, batchers, catalogue, tokens, ledger)
    admission = Admission(selector, tokens, settings.max_prompt_tokens, ledger)
    servicer = RouterServicer(admission, pipeline, settings.default_deadline_s)
    http = HttpServer(
        build_http_app(
            FrontDoor(
                admission,
                pipeline,
                selector.primary,
                telemetry.tracer("sluice.router.http"),
                settings.default_deadline_s,
            )
        ),
        settings.http_listen,
    )

    async def start() -> None:
        await batchers.start()
        port = await http.start()
        print(f"router OpenAI-compatible endpoint http://127.0.0.1:{port}/v1", flush=True)

    async def close() -> None:
        await http.stop()
        await batchers.close()
        for channel in channels.values():
            await channel.close()

    spend = SpendServicer(selector.primary, ledger)
    hosted = build_server(settings, servicer, spend, telemetry)
    await run_until_terminated(hosted, name="router", start=start, stop=close, telemetry=telemetry)

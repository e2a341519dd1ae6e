"""Builds and serves the router."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from sluice.cache.v1 import cache_service_pb2_grpc as cache_grpc
from sluice.compressor.v1 import compressor_service_pb2_grpc as compressor_grpc
from sluice.dispatcher.v1 import dispatcher_service_pb2_grpc as dispatcher_grpc
from sluice.router.v1 import deferred_service_pb2_grpc as deferred_grpc
from sluice.router.v1 import router_service_pb2 as pb
from sluice.router.v1 import router_service_pb2_grpc as pb_grpc
from sluice.router.v1 import spend_service_pb2_grpc as spend_grpc

from services.router.admission import Admission
from services.router.budgets import InMemoryLedger, JobLedger, ServedLedger
from services.router.cache_audit import CacheAudit
from services.router.cache_stage import CacheStage
from services.router.cascade import Cascade
from services.router.class_start import ClassStarts
from services.router.clients import BatcherReplicas, CacheClient, CompressorClient, ModelClient
from services.router.clients.deferred import DeferredClient
from services.router.config import Settings
from services.router.deferred import DeferredWork
from services.router.deferred_servicer import SERVICE_NAME as DEFERRED_SERVICE_NAME
from services.router.deferred_servicer import DeferredServicer
from services.router.exact_feed import FeedFollower
from services.router.exact_local import ExactCopies
from services.router.http_api import FrontDoor, HttpServer, build_http_app
from services.router.judge import LlmJudge
from services.router.learned import LearnedGates
from services.router.metrics import RouterMetrics
from services.router.pipeline import Pipeline, prompt_cost_estimator
from services.router.policy import PolicyError, load_policy
from services.router.rollout import PolicySelector, Rollout, parse_rollout_spec
from services.router.servicer import RouterServicer
from services.router.spend_servicer import SERVICE_NAME as SPEND_SERVICE_NAME
from services.router.spend_servicer import SpendServicer
from services.router.spending import JobSpending, Spending
from services.router.tier_gates import TierGates
from services.router.usage import InMemoryUsage, UsageLog
from services.router.usage_sqlite import SqliteUsage
from shared.grpc_client import open_channel
from shared.grpc_server import (
    HostedServer,
    build_grpc_server,
    ensure_address_free,
    run_until_terminated,
)
from shared.log import configure_logging
from shared.metrics import MetricsEndpoint
from shared.pricing import PriceCatalogue, load_catalogue
from shared.telemetry import Telemetry, init_telemetry
from shared.tokens import TokenCounter

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RouterService"].full_name


def build_server(
    settings: Settings,
    servicer: RouterServicer,
    spend: SpendServicer,
    deferred: DeferredServicer,
    telemetry: Telemetry,
    metrics: MetricsEndpoint | None = None,
) -> HostedServer:
    def register(server: grpc.aio.Server) -> None:
        pb_grpc.add_RouterServiceServicer_to_server(servicer, server)
        spend_grpc.add_SpendServiceServicer_to_server(spend, server)
        deferred_grpc.add_DeferredServiceServicer_to_server(deferred, server)

    names = [SERVICE_NAME, SPEND_SERVICE_NAME, DEFERRED_SERVICE_NAME]
    return build_grpc_server(
        settings.listen,
        names,
        register,
        telemetry,
        max_receive_bytes=settings.grpc_max_message_bytes,
        metrics=metrics,
    )


def build_ledger(settings: Settings, selector: PolicySelector) -> ServedLedger:
    """This replica's own ledger, or one shared through Redis that knows every tenant's spend
    from the start."""
    if settings.ledger_url == "memory://":
        return InMemoryLedger()
    # Imported here: the redis client costs ~10 MB of RSS in a router that does not use it.
    from services.router.budgets_redis import RedisLedger

    ledger = RedisLedger.from_url(settings.ledger_url)
    ledger.track(tenant for policy in selector.policies for tenant in policy.tenants)
    return ledger


def build_usage(settings: Settings) -> UsageLog:
    """The usage record `sluice report` reads, in the store settings name."""
    url = settings.usage_url
    if url.startswith("sqlite:///"):
        return UsageLog(SqliteUsage(Path(url.removeprefix("sqlite://"))))
    if url == "memory://":
        return UsageLog(InMemoryUsage())
    from services.router.usage_redis import RedisUsage  # imported here: see build_ledger

    return UsageLog(RedisUsage.from_url(url))


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


def load_learning(settings: Settings, selector: PolicySelector) -> LearnedGates | None:
    """The answer scorer, read now when a policy needs it: a missing or stale file stops the
    router at start with the file and the reason. None when no policy uses learning."""
    if not any(policy.uses_learning for policy in selector.policies):
        return None
    return LearnedGates.load(settings.learning_dir)


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
    ledger: JobLedger,
    learned: LearnedGates | None = None,
    metrics: RouterMetrics | None = None,
    usage: UsageLog | None = None,
) -> Pipeline:
    """The request path wired to the other services' stubs."""
    # One owner of the money, for the requests and for the cache's audits alike.
    spending = Spending(ledger, catalogue, usage)
    models = ModelClient(
        batchers,
        dispatcher_grpc.RegionalDispatcherServiceStub(channels["dispatcher"]),
        settings.dispatcher_addr,
    )
    cascade = Cascade(
        models,
        telemetry.tracer("sluice.router"),
        prompt_cost_estimator(catalogue, tokens),
        learned,
        TierGates(LlmJudge(models)),
        # Where each request class starts, learnt from this process's own traffic.
        ClassStarts(),
        metrics,
    )
    cache = CacheClient(
        cache_grpc.SemanticCacheServiceStub(channels["cache"]), settings.cache_timeout_s
    )
    copies = ExactCopies(settings.exact_copies)
    return Pipeline(
        cache,
        CompressorClient(
            compressor_grpc.PromptCompressorServiceStub(channels["compressor"]),
            settings.compressor_timeout_s,
        ),
        cascade,
        catalogue,
        tokens,
        ledger,
        cache_stage=CacheStage(
            cache,
            CacheAudit(
                cache, cascade, telemetry.tracer("sluice.router"), spending, metrics=metrics
            ),
            copies=copies,
            feed=FeedFollower(cache, copies),
        ),
        metrics=metrics,
        spending=spending,
    )


async def serve(settings: Settings) -> None:
    configure_logging("router", settings.log_level)
    # The HTTP side binds after the gRPC side is up; a taken HTTP address is found first, so it
    # is one line naming it (shared/runner.py), not uvicorn's exit from inside the server.
    ensure_address_free(settings.http_listen)
    telemetry = init_telemetry("sluice-router")
    metrics = MetricsEndpoint(settings.metrics_listen)
    catalogue = load_catalogue(settings.catalogue_file)
    selector = build_selector(settings, catalogue)
    # Read before the port opens: a broken scorer file is a config error, not a sick server.
    learned = await asyncio.to_thread(load_learning, settings, selector)
    ledger = build_ledger(settings, selector)
    usage = build_usage(settings)
    tokens = TokenCounter()
    channels = open_peer_channels(settings, telemetry)
    # Calls are routed to batcher replicas by hash, so identical calls share one flight.
    batchers = BatcherReplicas(settings.batcher_addr, lambda a: open_channel(a, telemetry))
    pipeline = build_pipeline(
        settings,
        telemetry,
        channels,
        batchers,
        catalogue,
        tokens,
        ledger,
        learned,
        RouterMetrics(metrics.registry),
        usage,
    )
    admission = Admission(selector, tokens, settings.max_prompt_tokens, ledger, catalogue)
    servicer = RouterServicer(admission, pipeline, settings.default_deadline_s)
    http = HttpServer(
        build_http_app(
            FrontDoor(
                admission,
                pipeline,
                selector.primary,
                telemetry.tracer("sluice.router.http"),
                settings.default_deadline_s,
            ),
            settings.door,
        ),
        settings.http_listen,
        settings.door,
    )

    async def start() -> None:
        if learned is not None:
            # Health turns SERVING only after the embedding model is in memory, off the loop.
            await asyncio.to_thread(learned.load_embedder)
        await ledger.start()
        await usage.start()
        await batchers.start()
        pipeline.cache.start()
        port = await http.start()
        print(f"router OpenAI-compatible endpoint http://127.0.0.1:{port}/v1", flush=True)

    async def close() -> None:
        await http.stop()
        await batchers.close()
        await ledger.close()
        await usage.close()
        for channel in channels.values():
            await channel.close()

    spend = SpendServicer(selector.primary, ledger, usage, settings.usage_admin_tenants)
    work = DeferredWork(selector.primary, DeferredClient(batchers), JobSpending(ledger, catalogue))
    deferred = DeferredServicer(work)
    hosted = build_server(settings, servicer, spend, deferred, telemetry, metrics)
    await run_until_terminated(hosted, name="router", start=start, stop=close, telemetry=telemetry)

"""The router's exact copies against real cache processes: two replicas sharing one Redis, the
router's own CacheStage, client and feed follower in this process, pointed at replica A.

An Invalidate of each target kind, made on either replica, drops the copy (through A's change
feed, and for B's through Redis first); a copy is gone once its entry has expired; another
tenant never gets it; a feed that is down turns the copies off until it is back; and through
the whole mesh a repeated request is answered from the router's copy at no cost."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc
from sluice.common.v1 import common_pb2

from services.router.cache_audit import AuditSampler, CacheAudit
from services.router.cache_stage import CacheStage
from services.router.cascade import Cascade
from services.router.clients.cache import CacheClient
from services.router.exact_feed import FeedFollower
from services.router.exact_local import ExactCopies
from services.router.model import ChatRequest, StageLine
from shared.convert import response_format_to_proto, sampling_to_proto, turns_to_proto
from shared.convert_tools import tools_to_proto
from shared.mesh import Mesh
from tests.integration.test_cache_service import free_port, start, wait_serving
from tests.support import DEV_KEY, ask, router_stub, running_redis, simulator_stats, stage_lines
from tests.unit.router.fakes import FakeModels
from tests.unit.router.fixtures import admit_acme, policy_doc
from tests.unit.router.test_cache_stage import TRACER

pytestmark = pytest.mark.integration

# Generous: a busy 2-core machine; the feed normally takes one message's time.
WITHIN_S = 30.0
CONTEXT = common_pb2.RequestContext(tenant_id="acme")
# Only exact hits matter here: the light rule verifier, whatever the default's model.
EXACT_ONLY = {"SLUICE_CACHE_VERIFY": "rules"}


@dataclass
class Replicas:
    ports: list[int]
    processes: list[subprocess.Popen[bytes]]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    logs = tmp_path_factory.mktemp("exact-copies")
    with running_redis(logs) as url:
        ports = [free_port(), free_port()]
        processes = [
            start(logs / f"replica-{n}.log", port, SLUICE_CACHE_STORE=url, **EXACT_ONLY)
            for n, port in enumerate(ports)
        ]
        try:
            for n, port in enumerate(ports):
                with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                    wait_serving(channel, processes[n], logs / f"replica-{n}.log")
            yield Replicas(ports, processes)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WITHIN_S
    while not check():
        assert time.monotonic() < deadline, f"not within {WITHIN_S}s"
        await asyncio.sleep(0.02)


@dataclass
class RouterSide:
    stage: CacheStage
    copies: ExactCopies

    async def before(self, request: ChatRequest) -> StageLine:
        _, line = await self.stage.before(request, time.monotonic() + 30)
        return line


@asynccontextmanager
async def router_side(port: int) -> AsyncIterator[RouterSide]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        client = CacheClient(pb_grpc.SemanticCacheServiceStub(channel), 10.0)
        copies = ExactCopies()
        audit = CacheAudit(
            client, Cascade(FakeModels({}), TRACER), TRACER, sampler=AuditSampler(lambda: 0.0)
        )
        follower = FeedFollower(client, copies)
        stage = CacheStage(client, audit, copies=copies, feed=follower)
        stage.start()
        try:
            await until(lambda: copies.live)
            yield RouterSide(stage, copies)
        finally:
            await stage.drain(10)


def asked(question: str) -> ChatRequest:
    return admit_acme(policy_doc(), question)


def as_store(request: ChatRequest, content: str, **extra: object) -> pb.StoreRequest:
    return pb.StoreRequest(
        context=CONTEXT,
        model_class=request.model_class.name,
        messages=turns_to_proto(request.turns),
        sampling=sampling_to_proto(request.sampling),
        response_format=response_format_to_proto(request.response_format),
        tools=tools_to_proto(request.tools),
        content=content,
        model="cheap",
        usage=common_pb2.Usage(input_tokens=10, output_tokens=3),
        finish_reason=common_pb2.FINISH_REASON_STOP,
        **extra,  # type: ignore[arg-type]
    )


def as_lookup(request: ChatRequest) -> pb.LookupRequest:
    return pb.LookupRequest(
        context=CONTEXT,
        model_class=request.model_class.name,
        messages=turns_to_proto(request.turns),
        sampling=sampling_to_proto(request.sampling),
        response_format=response_format_to_proto(request.response_format),
        tools=tools_to_proto(request.tools),
    )


def invalidation(target: str, request: ChatRequest, namespace: str) -> pb.InvalidateRequest:
    if target == "exact":
        exact = pb.ExactTarget(
            model_class=request.model_class.name,
            messages=turns_to_proto(request.turns),
            sampling=sampling_to_proto(request.sampling),
            response_format=response_format_to_proto(request.response_format),
            tools=tools_to_proto(request.tools),
        )
        return pb.InvalidateRequest(context=CONTEXT, exact=exact)
    if target == "namespace":
        return pb.InvalidateRequest(context=CONTEXT, namespace_key=namespace)
    if target == "tenant":
        return pb.InvalidateRequest(context=CONTEXT, tenant_wide=True)
    return pb.InvalidateRequest(context=CONTEXT, tag="doc:1")


@pytest.mark.parametrize(
    ("target", "through"),
    [
        ("exact", 0),
        ("exact", 1),
        ("namespace", 1),
        ("tenant", 1),
        ("tag", 1),
    ],
)
async def test_an_invalidate_of_any_target_on_any_replica_drops_the_copy(
    replicas: Replicas, target: str, through: int
) -> None:
    request = asked(f"Which {target} entry does replica {through} drop?")
    async with (
        router_side(replicas.ports[0]) as router,
        grpc.aio.insecure_channel(f"127.0.0.1:{replicas.ports[0]}") as a,
        grpc.aio.insecure_channel(f"127.0.0.1:{replicas.ports[through]}") as chosen,
    ):
        stub_a = pb_grpc.SemanticCacheServiceStub(a)
        await stub_a.Store(as_store(request, "Kept.", tags=["doc:1"]), timeout=30)
        assert (await router.before(request)).detail == "exact hit"
        assert (await router.before(request)).detail == "exact hit (router copy)"
        namespace = (await stub_a.Lookup(as_lookup(request), timeout=30)).namespace_key
        invalidate = invalidation(target, request, namespace)
        removed = await pb_grpc.SemanticCacheServiceStub(chosen).Invalidate(invalidate, timeout=30)
        assert removed.removed >= 1
        await until(lambda: len(router.copies) == 0)
        assert (await router.before(request)).detail == "miss"


async def test_a_copy_is_gone_once_its_entry_has_expired(replicas: Replicas) -> None:
    request = asked("Which answer lives three seconds?")
    async with (
        router_side(replicas.ports[0]) as router,
        grpc.aio.insecure_channel(f"127.0.0.1:{replicas.ports[0]}") as a,
    ):
        stub = pb_grpc.SemanticCacheServiceStub(a)
        await stub.Store(as_store(request, "Brief.", ttl=Duration(seconds=3)), timeout=30)
        assert (await router.before(request)).detail == "exact hit"
        assert (await router.before(request)).detail == "exact hit (router copy)"
        deadline = time.monotonic() + WITHIN_S
        while (await stub.Lookup(as_lookup(request), timeout=30)).kind != pb.HIT_KIND_MISS:
            assert time.monotonic() < deadline, "the entry never expired"
            await asyncio.sleep(0.05)
        # The cache missed first; the copy, which never outlives its entry, must be gone too.
        assert router.copies.get(request) is None
        assert (await router.before(request)).detail == "miss"


async def test_another_tenant_never_gets_the_copy(replicas: Replicas) -> None:
    request = asked("Whose answer is this?")
    other = dataclasses.replace(
        request, tenant=dataclasses.replace(request.tenant, tenant_id="other")
    )
    async with router_side(replicas.ports[0]) as router:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{replicas.ports[0]}") as a:
            await pb_grpc.SemanticCacheServiceStub(a).Store(as_store(request, "Acme's."))
        await router.before(request)
        assert (await router.before(request)).detail == "exact hit (router copy)"
        assert (await router.before(other)).detail == "miss"


async def test_a_feed_that_is_down_turns_the_copies_off_until_it_is_back(tmp_path: Path) -> None:
    port = free_port()
    process = start(tmp_path / "cache.log", port, **EXACT_ONLY)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_serving(channel, process, tmp_path / "cache.log")
        request = asked("What survives a cache restart?")
        async with router_side(port) as router:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as cache:
                await pb_grpc.SemanticCacheServiceStub(cache).Store(as_store(request, "Disk."))
            await router.before(request)
            assert (await router.before(request)).detail == "exact hit (router copy)"
            process.kill()
            process.wait(timeout=30)
            await until(lambda: not router.copies.live)
            assert len(router.copies) == 0
            assert (await router.before(request)).detail != "exact hit (router copy)"
            # Back (its SQLite file kept the entry), under a new epoch: the copies start over.
            process = start(tmp_path / "cache.log", port, **EXACT_ONLY)
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                wait_serving(channel, process, tmp_path / "cache.log")
            await until(lambda: router.copies.live)
            assert (await router.before(request)).detail == "exact hit"
            assert (await router.before(request)).detail == "exact hit (router copy)"
    finally:
        process.kill()
        process.wait(timeout=30)


async def test_through_the_mesh_a_repeat_is_answered_from_the_routers_copy(
    channel: grpc.aio.Channel, mesh: Mesh
) -> None:
    request = ask(f"What is a router copy? ({time.monotonic_ns()})")
    stub = router_stub(channel)
    first = await stub.Complete(request, metadata=DEV_KEY, timeout=30)
    upstream = simulator_stats(mesh)["regions"]["us-east"]["received"]
    details: list[str] = []
    # A repeat asks the cache while the store is still running, or while the change feed is
    # briefly stale on a busy machine (copies are served only within feed_stale_s of the last
    # poll); it is answered from the copy once both hold. Every repeat is a hit either way.
    deadline = time.monotonic() + 60
    while "exact hit (router copy)" not in details and time.monotonic() < deadline:
        again = await stub.Complete(request, metadata=DEV_KEY, timeout=30)
        assert again.cache_hit and again.content == first.content and again.tier == 0
        assert again.cost.total_cost_nano_usd == 0
        assert again.cost.cost_avoided_nano_usd == again.cost.baseline_cost_nano_usd > 0
        details.append(stage_lines(again)["cache"].detail)
        await asyncio.sleep(0.05)
    assert details[-1] == "exact hit (router copy)", details
    assert simulator_stats(mesh)["regions"]["us-east"]["received"] == upstream

"""Property: whatever the router's exact copies serve is what the cache itself would answer for
the same request, after any mix of stores, lookups and invalidations.

A real SemanticCache behind its servicer on an in-process gRPC server, the router's real
CacheClient, CacheStage and feed follower; the feed is polled by hand after each step, so the
check sees the state a settled feed gives. Requests differ in every field the keys cover."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc
from sluice.common.v1 import common_pb2

from services.cache.config import Settings
from services.cache.server import build_server
from services.router.cache_audit import AuditSampler, CacheAudit
from services.router.cache_stage import CacheStage
from services.router.cascade import Cascade
from services.router.clients.cache import CacheClient
from services.router.exact_feed import FeedFollower
from services.router.exact_local import ExactCopies, LocalBounds
from services.router.model import CacheLookup, ChatRequest
from shared.chat import (
    FormatKind,
    ResponseFormat,
    Role,
    Sampling,
    ToolFunction,
    ToolSet,
    Turn,
)
from shared.convert import response_format_to_proto, sampling_to_proto, turns_to_proto
from shared.convert_tools import choices_from_proto, tools_to_proto
from shared.telemetry import Telemetry
from tests.unit.cache.fakes import make_cache
from tests.unit.router.fakes import FakeModels, answer
from tests.unit.router.fixtures import admit_acme, policy_doc
from tests.unit.router.test_cache_stage import TRACER

VARIANTS: dict[str, list[Callable[[ChatRequest], ChatRequest]]] = {
    "tenant": [
        lambda r: r,
        lambda r: dataclasses.replace(r, tenant=dataclasses.replace(r.tenant, tenant_id="b")),
    ],
    "sampling": [
        lambda r: r,
        lambda r: dataclasses.replace(r, sampling=Sampling(temperature=-0.0)),
        lambda r: dataclasses.replace(r, sampling=Sampling(temperature=0.0, seed=3)),
        lambda r: dataclasses.replace(r, sampling=Sampling(temperature=0.0, max_tokens=9)),
    ],
    "format": [
        lambda r: r,
        lambda r: dataclasses.replace(r, response_format=ResponseFormat(FormatKind.JSON_OBJECT)),
    ],
    "tools": [
        lambda r: r,
        lambda r: dataclasses.replace(r, tools=ToolSet((ToolFunction("lookup", "Finds"),))),
    ],
    "turns": [
        lambda r: r,
        lambda r: dataclasses.replace(r, turns=(Turn(Role.SYSTEM, "Be brief."), *r.turns)),
    ],
}
POOL = 6
step = st.one_of(
    st.tuples(st.just("store"), st.integers(0, POOL - 1), st.sampled_from(["A.", "B.", "C."])),
    st.tuples(st.just("lookup"), st.integers(0, POOL - 1)),
    st.tuples(st.just("invalidate"), st.integers(0, POOL - 1)),
)
shape = st.fixed_dictionaries({name: st.integers(0, len(v) - 1) for name, v in VARIANTS.items()})


class Rig:
    """One cache server for the whole test; every example asks questions of its own."""

    served = 0  # copies checked against the cache, over all examples

    async def open(self) -> None:
        self.cache = await make_cache(max_entries=10_000)
        settings_ = Settings.from_env({"SLUICE_CACHE_LISTEN": "127.0.0.1:0"})
        self.hosted = build_server(settings_, self.cache, Telemetry(TracerProvider()))
        await self.hosted.server.start()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.hosted.port}")
        self.stub = pb_grpc.SemanticCacheServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()
        await self.hosted.server.stop(None)
        await self.cache.aclose()

    async def run(self, shapes: list[dict[str, int]], steps: list[tuple[Any, ...]]) -> None:
        nonce = uuid.uuid4().hex[:8]
        pool = [request_of(f"Question {n % 3} ({nonce})?", s) for n, s in enumerate(shapes)]
        client = CacheClient(self.stub, 10.0)
        copies = ExactCopies(LocalBounds(feed_stale_s=1e9))
        follower = FeedFollower(client, copies, wait_s=0.0)
        audit = CacheAudit(
            client, Cascade(FakeModels({}), TRACER), TRACER, sampler=AuditSampler(lambda: 0)
        )
        stage = CacheStage(client, audit, copies=copies)
        await follower.poll_once()
        for kind, index, *rest in steps:
            request = pool[index % len(pool)]
            if kind == "store":
                stage.after(request, CacheLookup(), answer(rest[0], "cheap"))
                await stage.stores.drain()
            elif kind == "lookup":
                await stage.before(request, time.monotonic() + 30)
            else:
                await self.stub.Invalidate(invalidation(request), timeout=30)
            await follower.poll_once()
            for asked in pool:
                await self.check(copies, asked)

    async def check(self, copies: ExactCopies, request: ChatRequest) -> None:
        copy = copies.get(request)
        if copy is None:
            return
        self.served += 1
        found = await self.stub.Lookup(lookup_of(request), timeout=30)
        assert found.kind == pb.HIT_KIND_EXACT, "a copy served what the cache would not"
        assert (found.entry_id, found.content, found.model) == (
            copy.entry_id,
            copy.content,
            copy.model,
        )
        assert (found.usage.input_tokens, found.usage.output_tokens) == (
            copy.usage.input_tokens,
            copy.usage.output_tokens,
        )
        assert choices_from_proto(found.choices) == copy.choices


def request_of(question: str, shape: dict[str, int]) -> ChatRequest:
    request = admit_acme(policy_doc(), question)
    for name, pick in shape.items():
        request = VARIANTS[name][pick](request)
    return request


def lookup_of(request: ChatRequest) -> pb.LookupRequest:
    return pb.LookupRequest(
        context=common_pb2.RequestContext(tenant_id=request.tenant.tenant_id),
        model_class=request.model_class.name,
        messages=turns_to_proto(request.turns),
        sampling=sampling_to_proto(request.sampling),
        response_format=response_format_to_proto(request.response_format),
        tools=tools_to_proto(request.tools),
        allow_semantic=False,
    )


def invalidation(request: ChatRequest) -> pb.InvalidateRequest:
    asked = lookup_of(request)
    return pb.InvalidateRequest(
        context=asked.context,
        exact=pb.ExactTarget(
            model_class=asked.model_class,
            messages=asked.messages,
            sampling=asked.sampling,
            response_format=asked.response_format,
            tools=asked.tools,
        ),
    )


def test_a_copy_never_differs_from_what_the_cache_would_answer() -> None:
    loop = asyncio.new_event_loop()
    rig = Rig()
    loop.run_until_complete(rig.open())

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        shapes=st.lists(shape, min_size=POOL, max_size=POOL),
        steps=st.lists(step, min_size=1, max_size=12),
    )
    def check(shapes: list[dict[str, int]], steps: list[tuple[Any, ...]]) -> None:
        loop.run_until_complete(rig.run(shapes, steps))

    try:
        check()
        assert rig.served > 0, "no example served a copy: the property was never exercised"
    finally:
        loop.run_until_complete(rig.close())
        loop.close()

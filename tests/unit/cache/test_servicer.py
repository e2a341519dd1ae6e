"""The servicer over a real in-process grpc.aio server: proto mapping, status codes, spans."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc
from sluice.common.v1 import common_pb2

from services.cache.config import Settings
from services.cache.server import SERVICE_NAME, build_server
from shared.errors import error_origin
from shared.telemetry import Telemetry
from tests.unit.cache.fakes import HashingEmbedder, make_cache

QUESTION = "what is the capital of france"
PARAPHRASE = "what is the capital of france please"


@dataclass
class Served:
    stub: pb_grpc.SemanticCacheServiceAsyncStub
    spans: InMemorySpanExporter

    def attributes(self, method: str) -> dict[str, object]:
        [span] = [s for s in self.spans.get_finished_spans() if s.name.endswith(f"/{method}")]
        return dict(span.attributes or {})


@asynccontextmanager
async def serving(embedder: HashingEmbedder) -> AsyncIterator[Served]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    settings = Settings.from_env({"SLUICE_CACHE_LISTEN": "127.0.0.1:0"})
    cache = await make_cache(embedder=embedder, min_similarity=0.9)
    hosted = build_server(settings, cache, Telemetry(provider))
    await hosted.server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{hosted.port}")
    try:
        yield Served(pb_grpc.SemanticCacheServiceStub(channel), spans)
    finally:
        await channel.close()
        await hosted.server.stop(None)
        provider.shutdown()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serving(HashingEmbedder()) as running:
        yield running


def user(text: str) -> common_pb2.ChatMessage:
    return common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)


def lookup(text: str, *, tenant: str = "acme", semantic: bool = True) -> pb.LookupRequest:
    return pb.LookupRequest(
        context=common_pb2.RequestContext(tenant_id=tenant),
        model_class="small",
        messages=[user(text)],
        sampling=common_pb2.SamplingParams(temperature=0.0, max_tokens=64),
        allow_semantic=semantic,
    )


def store(text: str, content: str = "Paris.", ttl: Duration | None = None) -> pb.StoreRequest:
    return pb.StoreRequest(
        context=common_pb2.RequestContext(tenant_id="acme"),
        model_class="small",
        messages=[user(text)],
        sampling=common_pb2.SamplingParams(temperature=0.0, max_tokens=64),
        content=content,
        model="gpt-4o-mini",
        usage=common_pb2.Usage(input_tokens=12, output_tokens=3),
        finish_reason=common_pb2.FINISH_REASON_STOP,
        ttl=ttl,
    )


def test_health_and_reflection_use_the_full_service_name():
    assert SERVICE_NAME == "sluice.cache.v1.SemanticCacheService"


async def test_store_then_exact_hit_round_trips_every_field(served):
    stored = await served.stub.Store(store(QUESTION))
    response = await served.stub.Lookup(lookup(QUESTION))
    assert response.kind == pb.HIT_KIND_EXACT
    assert response.entry_id == stored.entry_id
    assert response.content == "Paris."
    assert response.model == "gpt-4o-mini"
    assert response.usage == common_pb2.Usage(input_tokens=12, output_tokens=3)
    assert response.finish_reason == common_pb2.FINISH_REASON_STOP
    assert response.similarity == 1.0
    attributes = served.attributes("Lookup")
    assert attributes["sluice.stage"] == "cache"
    assert attributes["sluice.cache.hit"] is True
    assert attributes["sluice.cache.hit_kind"] == "exact"
    assert attributes["sluice.cache.similarity"] == 1.0
    assert attributes["sluice.cost.usd"] == 0.0
    assert "sluice.cost_avoided.usd" not in attributes  # the router's to set
    assert served.attributes("Store")["sluice.stage"] == "cache"


async def test_semantic_hit_and_miss(served):
    await served.stub.Store(store(QUESTION))
    hit = await served.stub.Lookup(lookup(PARAPHRASE))
    assert hit.kind == pb.HIT_KIND_SEMANTIC
    assert hit.similarity == pytest.approx(0.926, abs=1e-3)
    assert (await served.stub.Lookup(lookup(PARAPHRASE, semantic=False))).kind == (pb.HIT_KIND_MISS)
    miss = await served.stub.Lookup(lookup(QUESTION, tenant="globex"))
    assert miss.kind == pb.HIT_KIND_MISS
    assert miss.content == "" and miss.entry_id == ""
    spans = [s for s in served.spans.get_finished_spans() if s.name.endswith("/Lookup")]
    assert [s.attributes["sluice.cache.hit_kind"] for s in spans] == [
        "semantic",
        "miss",
        "miss",
    ]
    assert spans[-1].attributes["sluice.cache.hit"] is False


async def test_store_honours_the_requested_ttl(served):
    stored = await served.stub.Store(store(QUESTION, ttl=Duration(seconds=30)))
    assert stored.entry_id
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await served.stub.Store(store(QUESTION, ttl=Duration(seconds=-1)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ttl" in (raised.value.details() or "")


def _without_tenant(request: pb.LookupRequest) -> None:
    request.context.tenant_id = ""


def _without_messages(request: pb.LookupRequest) -> None:
    del request.messages[:]


def _unknown_role(request: pb.LookupRequest) -> None:
    request.messages[0].role = common_pb2.ROLE_UNSPECIFIED


@pytest.mark.parametrize(
    ("break_request", "field"),
    [
        (_without_tenant, "tenant_id"),
        (_without_messages, "messages"),
        (_unknown_role, "messages[0].role"),
    ],
)
async def test_invalid_requests_are_invalid_argument(
    served, break_request: Callable[[pb.LookupRequest], None], field: str
):
    request = lookup(QUESTION)
    break_request(request)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await served.stub.Lookup(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (raised.value.details() or "")
    assert error_origin(raised.value) == "cache"


async def test_store_rejects_missing_tenant_and_empty_messages(served):
    without_tenant = store(QUESTION)
    without_tenant.context.tenant_id = ""
    without_messages = store(QUESTION)
    del without_messages.messages[:]
    for request, field in ((without_tenant, "tenant_id"), (without_messages, "messages")):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await served.stub.Store(request)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in (raised.value.details() or "")


async def test_unavailable_until_the_model_is_loaded():
    async with serving(HashingEmbedder(loaded=False)) as running:
        for call in (running.stub.Lookup(lookup(QUESTION)), running.stub.Store(store(QUESTION))):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            assert error_origin(raised.value) == "cache"


async def test_store_returns_the_namespace_and_lookup_reports_it(served):
    stored = await served.stub.Store(store(QUESTION))
    assert len(stored.namespace_key) == 64
    assert (await served.stub.Lookup(lookup("unrelated words"))).namespace_key == (
        stored.namespace_key
    )


async def test_max_age_is_honoured_and_validated(served):
    await served.stub.Store(store(QUESTION))
    request = lookup(QUESTION)
    request.max_age.FromSeconds(60)
    assert (await served.stub.Lookup(request)).kind == pb.HIT_KIND_EXACT
    request.max_age.FromSeconds(0)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await served.stub.Lookup(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_age" in (raised.value.details() or "")


async def test_response_formats_do_not_share_entries(served):
    request = store(QUESTION)
    request.response_format.type = common_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT
    await served.stub.Store(request)
    assert (await served.stub.Lookup(lookup(QUESTION))).kind == pb.HIT_KIND_MISS
    wants_json = lookup(QUESTION)
    wants_json.response_format.type = common_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT
    assert (await served.stub.Lookup(wants_json)).kind == pb.HIT_KIND_EXACT


async def test_blank_last_user_turn_is_invalid_argument(served):
    for call in (served.stub.Lookup(lookup("  ")), served.stub.Store(store(""))):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "messages[0].content is empty" in (raised.value.details() or "")


def invalidate(**target) -> pb.InvalidateRequest:
    return pb.InvalidateRequest(context=common_pb2.RequestContext(tenant_id="acme"), **target)


async def test_invalidate_each_target_and_stats(served):
    tagged = store(QUESTION)
    tagged.tags.extend(["geo", "fr"])
    first = await served.stub.Store(tagged)
    await served.stub.Store(store("a second question"))
    await served.stub.Lookup(lookup(QUESTION))
    await served.stub.Lookup(lookup("nothing like it at all"))
    exact = pb.ExactTarget(
        model_class="small",
        messages=[user("a second question")],
        sampling=common_pb2.SamplingParams(temperature=0.0, max_tokens=64),
    )
    assert (await served.stub.Invalidate(invalidate(exact=exact))).removed == 1
    assert (await served.stub.Invalidate(invalidate(tag="fr"))).removed == 1
    assert (await served.stub.Invalidate(invalidate(tag="fr"))).removed == 0
    await served.stub.Store(store(QUESTION))
    removed = await served.stub.Invalidate(invalidate(namespace_key=first.namespace_key))
    assert removed.removed == 1
    await served.stub.Store(store(QUESTION))
    assert (await served.stub.Invalidate(invalidate(tenant_wide=True))).removed == 1
    stats = await served.stub.Stats(
        pb.StatsRequest(context=common_pb2.RequestContext(tenant_id="acme"))
    )
    assert (stats.tenant_id, stats.exact_hits, stats.misses) == ("acme", 1, 1)
    assert (stats.entries, stats.bytes, stats.invalidations) == (0, 0, 4)
    totals = await served.stub.Stats(pb.StatsRequest())
    assert totals.tenant_id == "" and totals.exact_hits == 1


@pytest.mark.parametrize(
    ("target", "code", "text"),
    [
        ({"namespace_key": "f" * 64}, grpc.StatusCode.NOT_FOUND, "holds no entries"),
        ({"tenant_wide": True}, grpc.StatusCode.NOT_FOUND, "no cache entries"),
        ({"tenant_wide": False}, grpc.StatusCode.INVALID_ARGUMENT, "tenant_wide must be true"),
        ({"namespace_key": "nope"}, grpc.StatusCode.INVALID_ARGUMENT, "64 hex digits"),
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "one of exact"),
    ],
)
async def test_invalidate_errors(served, target, code, text):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await served.stub.Invalidate(invalidate(**target))
    assert raised.value.code() == code
    assert text in (raised.value.details() or "")
    assert error_origin(raised.value) == "cache"

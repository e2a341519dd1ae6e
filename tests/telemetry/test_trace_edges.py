"""One trace per request across every hop, with the parent→child edge of each hop asserted,
and cost attributes on the spans (after opentelemetry-demo's test_traces_edges)."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest

from shared.mesh import Mesh
from shared.otlp_receiver import OtlpReceiver, SpanRecord
from tests.support import DEV_KEY, ask, router_stub, with_context

pytestmark = pytest.mark.integration

SERVER, CLIENT = 2, 3  # OTLP span kinds
ROUTER = "/sluice.router.v1.RouterService/Complete"
LOOKUP = "/sluice.cache.v1.SemanticCacheService/Lookup"
STORE = "/sluice.cache.v1.SemanticCacheService/Store"
COMPRESS = "/sluice.compressor.v1.PromptCompressorService/Compress"
EXECUTE = "/sluice.batcher.v1.BatcherService/Execute"
DISPATCH = "/sluice.dispatcher.v1.RegionalDispatcherService/Dispatch"


def wait_for_trace(receiver: OtlpReceiver, trace_id: str, expected: int) -> list[SpanRecord]:
    deadline = time.monotonic() + 15
    spans = receiver.spans(trace_id)
    while len(spans) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        spans = receiver.spans(trace_id)
    return spans


def one(spans: list[SpanRecord], name: str, service: str, kind: int) -> SpanRecord:
    found = [s for s in spans if s.name == name and s.service == service and s.kind == kind]
    assert len(found) == 1, f"expected one {name} ({service}, kind {kind}); got {found}"
    return found[0]


def assert_edge(parent: SpanRecord, child: SpanRecord) -> None:
    assert child.parent_span_id == parent.span_id, f"{child.name} is not a child of {parent.name}"


async def test_every_hop_is_an_edge_of_one_trace(
    channel: grpc.aio.Channel, mesh: Mesh, mesh_and_traces: tuple[Mesh, OtlpReceiver]
) -> None:
    _, receiver = mesh_and_traces
    response = await router_stub(channel).Complete(
        ask(with_context(f"Explain OTLP ({uuid.uuid4().hex[:6]})")), metadata=DEV_KEY, timeout=30
    )
    spans = wait_for_trace(receiver, response.trace_id, expected=14)
    assert {s.trace_id for s in spans} == {response.trace_id}
    assert len(spans) == 14, sorted(f"{s.service} {s.name}" for s in spans)

    root = one(spans, ROUTER, "sluice-router", SERVER)
    assert root.parent_span_id == ""
    for name, service in (
        (LOOKUP, "sluice-cache"),
        (COMPRESS, "sluice-compressor"),
        (STORE, "sluice-cache"),
    ):
        client = one(spans, name, "sluice-router", CLIENT)
        assert_edge(root, client)
        assert_edge(client, one(spans, name, service, SERVER))

    tier = one(spans, "tier 1 Qwen/Qwen3-8B", "sluice-router", 1)
    assert_edge(root, tier)
    execute_client = one(spans, EXECUTE, "sluice-router", CLIENT)
    assert_edge(tier, execute_client)
    execute_server = one(spans, EXECUTE, "sluice-batcher", SERVER)
    assert_edge(execute_client, execute_server)
    dispatch_client = one(spans, DISPATCH, "sluice-batcher", CLIENT)
    assert_edge(execute_server, dispatch_client)
    dispatch_server = one(spans, DISPATCH, "sluice-dispatcher", SERVER)
    assert_edge(dispatch_client, dispatch_server)
    chat = one(spans, "chat Qwen/Qwen3-8B", "sluice-dispatcher", CLIENT)
    assert_edge(dispatch_server, chat)
    http = [s for s in spans if s.parent_span_id == chat.span_id]
    assert len(http) == 1 and http[0].name == "POST" and http[0].kind == CLIENT
    status = http[0].attributes.get(
        "http.response.status_code", http[0].attributes.get("http.status_code")
    )
    assert status == 200

    for span in spans:  # carried in W3C baggage from the router to every hop
        assert span.attributes.get("sluice.policy_version") == response.policy_version, span.name
        assert span.attributes.get("sluice.tenant") == "dev", span.name

    cost = response.cost
    assert root.attributes["sluice.cost.usd"] == pytest.approx(cost.total_cost_nano_usd / 1e9)
    assert root.attributes["sluice.cost_avoided.usd"] == pytest.approx(
        cost.cost_avoided_nano_usd / 1e9
    )
    assert root.attributes["sluice.tier"] == 1
    assert root.attributes["sluice.policy_version"] == response.policy_version
    for span in (chat, dispatch_server, tier):
        assert span.attributes["gen_ai.request.model"] == "Qwen/Qwen3-8B"
        assert span.attributes["gen_ai.usage.input_tokens"] == response.usage.input_tokens
        assert span.attributes["gen_ai.usage.output_tokens"] == response.usage.output_tokens
        assert span.attributes["sluice.cost.usd"] == pytest.approx(cost.total_cost_nano_usd / 1e9)
        assert span.attributes["sluice.region"] == response.region
    assert chat.attributes["sluice.tier"] == 1 and chat.attributes["sluice.stage"] == "dispatch"
    assert one(spans, LOOKUP, "sluice-cache", SERVER).attributes["sluice.stage"] == "cache"
    assert (
        one(spans, COMPRESS, "sluice-compressor", SERVER).attributes["sluice.stage"] == "compressor"
    )
    assert execute_server.attributes["sluice.stage"] == "batcher"


async def test_cache_hit_trace_records_cost_avoided(
    channel: grpc.aio.Channel, mesh: Mesh, mesh_and_traces: tuple[Mesh, OtlpReceiver]
) -> None:
    _, receiver = mesh_and_traces
    request = ask(f"Define idempotency ({uuid.uuid4().hex[:6]})")
    await router_stub(channel).Complete(request, metadata=DEV_KEY, timeout=30)
    hit = await router_stub(channel).Complete(request, metadata=DEV_KEY, timeout=30)
    spans = wait_for_trace(receiver, hit.trace_id, expected=3)
    root = one(spans, ROUTER, "sluice-router", SERVER)
    assert root.attributes["sluice.cache.hit"] is True
    assert root.attributes["sluice.cost.usd"] == 0.0
    assert root.attributes["sluice.cost_avoided.usd"] == pytest.approx(
        hit.cost.baseline_cost_nano_usd / 1e9
    )
    assert not [s for s in spans if s.service == "sluice-dispatcher"]

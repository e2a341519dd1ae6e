"""The request path through the real mesh: answers, cost, cache hits, escalation, failover,
singleflight and streaming."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as router_pb

from shared.mesh import Mesh
from tests.support import DEV_KEY, ask, patch_region, router_stub, simulator_stats, stage_lines

pytestmark = pytest.mark.integration


def unique(text: str) -> str:
    """A prompt no earlier test has cached."""
    return f"{text} (case {uuid.uuid4().hex[:8]})"


async def test_answer_with_per_stage_cost_and_trace_id(
    channel: grpc.aio.Channel, mesh: Mesh
) -> None:
    response = await router_stub(channel).Complete(
        ask(unique("Explain DNS")), metadata=DEV_KEY, timeout=30
    )
    assert response.content and response.tier == 1 and response.model == "Qwen/Qwen3-8B"
    assert response.region == "us-east"
    assert len(response.trace_id) == 32 and response.trace_id != "0" * 32
    lines = stage_lines(response)
    assert set(lines) == {"cache", "compressor", "tier 1", "batcher"}
    assert lines["tier 1"].outcome == common_pb2.STAGE_OUTCOME_USED
    assert lines["tier 1"].cost_nano_usd > 0
    cost = response.cost
    assert cost.total_cost_nano_usd == sum(line.cost_nano_usd for line in cost.stages)
    assert cost.baseline_model == "gpt-4o"
    assert cost.cost_avoided_nano_usd == cost.baseline_cost_nano_usd - cost.total_cost_nano_usd > 0
    assert response.policy_version.startswith("default-")


async def test_second_identical_request_is_an_exact_cache_hit(
    channel: grpc.aio.Channel, mesh: Mesh
) -> None:
    request = ask(unique("What is a semantic cache"))
    first = await router_stub(channel).Complete(request, metadata=DEV_KEY, timeout=30)
    upstream_calls = simulator_stats(mesh)["regions"]["us-east"]["received"]
    second = await router_stub(channel).Complete(request, metadata=DEV_KEY, timeout=30)
    assert not first.cache_hit and second.cache_hit
    assert second.content == first.content and second.tier == 0
    assert "exact hit" in stage_lines(second)["cache"].detail
    assert second.cost.total_cost_nano_usd == 0
    assert second.cost.cost_avoided_nano_usd == second.cost.baseline_cost_nano_usd > 0
    assert simulator_stats(mesh)["regions"]["us-east"]["received"] == upstream_calls


async def test_paraphrase_is_a_semantic_cache_hit(channel: grpc.aio.Channel, mesh: Mesh) -> None:
    system = f"You answer geography questions. Session {uuid.uuid4().hex}."
    stub = router_stub(channel)
    first = await stub.Complete(
        ask("What is the capital of France?", system=system), metadata=DEV_KEY, timeout=30
    )
    second = await stub.Complete(
        ask("What's the capital city of France?", system=system), metadata=DEV_KEY, timeout=30
    )
    unrelated = await stub.Complete(
        ask("What is the population of France?", system=system), metadata=DEV_KEY, timeout=30
    )
    assert not first.cache_hit
    assert second.cache_hit and "semantic hit" in stage_lines(second)["cache"].detail
    assert second.content == first.content == "The capital of France is Paris."
    assert not unrelated.cache_hit


async def test_truncated_tier_one_answer_escalates(channel: grpc.aio.Channel, mesh: Mesh) -> None:
    response = await router_stub(channel).Complete(
        ask(unique("Describe everything [sim:truncate]")), metadata=DEV_KEY, timeout=30
    )
    lines = stage_lines(response)
    assert lines["tier 1"].outcome == common_pb2.STAGE_OUTCOME_REJECTED
    assert "finish_reason" in lines["tier 1"].detail
    assert lines["tier 1"].cost_nano_usd > 0, "the rejected attempt's cost still counts"
    assert response.tier == 2 and response.model == "deepseek-v4-flash"
    assert response.finish_reason == common_pb2.FINISH_REASON_STOP
    assert (
        response.cost.total_cost_nano_usd
        == lines["tier 1"].cost_nano_usd + lines["tier 2"].cost_nano_usd
    )


async def test_refusal_escalates(channel: grpc.aio.Channel, mesh: Mesh) -> None:
    response = await router_stub(channel).Complete(
        ask(unique("Write a limerick [sim:refuse]")), metadata=DEV_KEY, timeout=30
    )
    assert "refusal" in stage_lines(response)["tier 1"].detail
    assert response.tier == 2


async def test_region_outage_fails_over_to_the_next_region(
    channel: grpc.aio.Channel, mesh: Mesh
) -> None:
    patch_region(mesh, "us-east", outage=True)
    response = await router_stub(channel).Complete(
        ask(unique("Summarise TCP")), metadata=DEV_KEY, timeout=30
    )
    assert response.content and response.region != "us-east"
    stats = simulator_stats(mesh)["regions"]
    assert stats["us-east"]["faults"]["outage"] >= 1
    assert stats[response.region]["answered"] >= 1


async def test_identical_concurrent_requests_make_one_upstream_call(
    channel: grpc.aio.Channel, mesh: Mesh
) -> None:
    # Slow the upstream so all requests are in flight together; bypass the cache so only the
    # batcher can deduplicate them.
    patch_region(mesh, "us-east", ttft_median_ms=600, ttft_p99_ms=700)
    request = ask(unique("Compare HTTP/2 and HTTP/3"), cache_mode=router_pb.CACHE_MODE_BYPASS)
    stub = router_stub(channel)
    responses = await asyncio.gather(
        *(stub.Complete(request, metadata=DEV_KEY, timeout=30) for _ in range(6))
    )
    assert len({r.content for r in responses}) == 1
    assert simulator_stats(mesh)["regions"]["us-east"]["received"] == 1
    batcher = [stage_lines(r)["batcher"] for r in responses]
    shared = [line for line in batcher if line.outcome == common_pb2.STAGE_OUTCOME_USED]
    assert len(shared) == 5 and "6 callers" in shared[0].detail
    # Only the caller whose call went upstream pays for it.
    assert sorted(stage_lines(r)["tier 1"].cost_nano_usd > 0 for r in responses) == [False] * 5 + [
        True
    ]


async def test_stream_sends_deltas_then_a_summary(channel: grpc.aio.Channel, mesh: Mesh) -> None:
    request = router_pb.CompleteStreamRequest(
        messages=[
            common_pb2.ChatMessage(
                role=common_pb2.ROLE_USER, content=unique("Tell me a story [sim:refuse]")
            )
        ]
    )
    events = [
        e async for e in router_stub(channel).CompleteStream(request, metadata=DEV_KEY, timeout=30)
    ]
    deltas = [e.delta for e in events if e.HasField("delta")]
    assert events[-1].HasField("summary") and all(e.HasField("delta") for e in events[:-1])
    summary = events[-1].summary
    assert {d.attempt for d in deltas} == {1, 2}, (
        "the refused first attempt is streamed, then retried"
    )
    assert "".join(d.text for d in deltas if d.attempt == 2) == summary.content
    assert summary.tier == 2 and summary.cost.total_cost_nano_usd > 0 and summary.trace_id

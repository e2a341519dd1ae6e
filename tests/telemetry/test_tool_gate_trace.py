"""A cheap tier's bad tool call in the trace: both tier spans are children of the router's
span, the rejected one carries the tool-call gate's failure kind, and the router's span the
request class and where it started."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from shared.mesh import Mesh
from shared.otlp_receiver import OtlpReceiver
from tests.integration.test_grpc_tools import weather_request
from tests.support import DEV_KEY, router_stub
from tests.telemetry.test_trace_edges import ROUTER, SERVER, assert_edge, one

pytestmark = pytest.mark.integration


async def test_the_tool_call_gate_reason_is_on_the_rejected_tiers_span(
    channel: grpc.aio.Channel, mesh: Mesh, mesh_and_traces: tuple[Mesh, OtlpReceiver]
) -> None:
    _, receiver = mesh_and_traces
    response = await router_stub(channel).Complete(
        weather_request("[sim:bad-tool-name]"), metadata=DEV_KEY, timeout=30
    )
    assert response.tier == 2
    wanted = {ROUTER, "tier 1 Qwen/Qwen3-8B", "tier 2 deepseek-v4-flash"}
    deadline = time.monotonic() + 30
    spans = receiver.spans(response.trace_id)
    while not wanted <= {s.name for s in spans} and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        spans = receiver.spans(response.trace_id)
    root = one(spans, ROUTER, "sluice-router", SERVER)
    cheap = one(spans, "tier 1 Qwen/Qwen3-8B", "sluice-router", 1)
    mid = one(spans, "tier 2 deepseek-v4-flash", "sluice-router", 1)
    assert_edge(root, cheap)
    assert_edge(root, mid)
    assert cheap.attributes["sluice.gate.tool_call.reason"] == "unknown_function"
    assert "sluice.gate.tool_call.reason" not in mid.attributes
    assert root.attributes["sluice.router.class_key"] == "chat/text/tools/max_tokens unset"
    assert root.attributes["sluice.router.class_start_tier"] == 1

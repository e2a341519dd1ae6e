"""A caller that leaves a stream early (a cancelled CompleteStream, a closed SSE connection) gets
nothing logged against it: no traceback, no "Failed to detach context"; the upstream stream is
closed; and every trace stays one tree, rooted at the router's server span."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from pathlib import Path

import grpc
import httpx
import pytest
from sluice.router.v1 import router_service_pb2 as router_pb

from shared.mesh import Mesh
from shared.otlp_receiver import OtlpReceiver, SpanRecord
from tests.support import DEV_KEY, ask, patch_region, router_stub, simulator_stats

pytestmark = pytest.mark.integration

STREAMS = 24
REGIONS = ("us-east", "eu-west", "ap-south")
GRPC_ROOT = "/sluice.router.v1.RouterService/CompleteStream"
HTTP_ROOT = "POST /v1/chat/completions"
DISPATCH_SERVER = (
    "sluice-dispatcher",
    "/sluice.dispatcher.v1.RegionalDispatcherService/DispatchStream",
)
NOISE = ("Traceback", "Failed to detach context", "Exception in ASGI application")


def slow_answers(mesh: Mesh) -> None:
    """Answers stream for a while, a few words at a time, so callers leave mid-stream."""
    for region in REGIONS:
        patch_region(mesh, region, per_token_ms=5)


def log_sizes(mesh: Mesh) -> dict[str, int]:
    return {
        name: (mesh.log_dir / f"{name}.log").stat().st_size for name in ("router", "dispatcher")
    }


def logged_since(mesh: Mesh, sizes: dict[str, int]) -> dict[str, str]:
    def tail(path: Path, offset: int) -> str:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    return {name: tail(mesh.log_dir / f"{name}.log", size) for name, size in sizes.items()}


def settled_spans(receiver: OtlpReceiver) -> list[SpanRecord]:
    """Every span, once no new one has arrived for a while (exports go out every 100 ms)."""
    deadline = time.monotonic() + 60
    count, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        spans = receiver.spans()
        if len(spans) != count:
            count, quiet_since = len(spans), time.monotonic()
        elif time.monotonic() - quiet_since > 2.0:
            return spans
        time.sleep(0.1)
    return receiver.spans()


def traces_rooted_at(
    spans: list[SpanRecord], root: str, old: set[str]
) -> dict[str, list[SpanRecord]]:
    traces: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        traces[span.trace_id].append(span)
    return {
        trace_id: members
        for trace_id, members in traces.items()
        if trace_id not in old and any(s.name == root and not s.parent_span_id for s in members)
    }


def assert_one_tree(trace_id: str, spans: list[SpanRecord], root: str) -> None:
    ids = {s.span_id for s in spans}
    roots = [(s.service, s.name) for s in spans if s.parent_span_id not in ids]
    assert roots == [("sluice-router", root)], f"trace {trace_id} has roots {roots}"


def wait_for_upstreams_closed(mesh: Mesh, streams: int) -> None:
    """The dispatcher closes the upstream streams of callers that left: most of them, since
    one that was already done when its caller left (on a stalled machine) is not cancelled."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        counts = simulator_stats(mesh)["regions"].values()
        if sum(c["cancelled"] for c in counts) >= streams // 2:
            return
        time.sleep(0.1)
    pytest.fail(f"upstream streams were not closed: {simulator_stats(mesh)['regions']}")


async def leave_after_first_message(address: str, n: int) -> None:
    """A client that goes away after the first message: half cancel the call, half just close
    their channel (which cancels it too)."""
    question = ask(f"Explain write-ahead logs at length ({uuid.uuid4().hex})")
    request = router_pb.CompleteStreamRequest(
        messages=question.messages, cache_mode=router_pb.CACHE_MODE_BYPASS
    )
    async with grpc.aio.insecure_channel(address) as channel:
        call = router_stub(channel).CompleteStream(request, metadata=DEV_KEY, timeout=60)
        first = await call.read()
        assert isinstance(first, router_pb.CompleteStreamResponse) and first.HasField("delta")
        if n % 2:
            call.cancel()


async def test_cancelled_grpc_streams_leave_clean_logs_and_one_trace_each(
    mesh: Mesh, mesh_and_traces: tuple[Mesh, OtlpReceiver]
) -> None:
    _, receiver = mesh_and_traces
    slow_answers(mesh)
    old = {s.trace_id for s in receiver.spans()}
    sizes = log_sizes(mesh)

    address = mesh.address("router")
    await asyncio.gather(*(leave_after_first_message(address, n) for n in range(STREAMS)))

    wait_for_upstreams_closed(mesh, STREAMS)
    traces = traces_rooted_at(settled_spans(receiver), GRPC_ROOT, old)
    assert len(traces) == STREAMS
    for trace_id, spans in traces.items():
        assert_one_tree(trace_id, spans, GRPC_ROOT)
        assert any((s.service, s.name) == DISPATCH_SERVER for s in spans), trace_id
    for name, text in logged_since(mesh, sizes).items():
        assert not [word for word in NOISE if word in text], f"{name} logged:\n{text[-3000:]}"


async def close_mid_stream(url: str, after_s: float) -> None:
    body = {
        "model": "chat",
        "stream": True,
        "messages": [{"role": "user", "content": f"Explain SSE at length ({uuid.uuid4().hex})"}],
    }
    headers = {"authorization": "Bearer dev"}
    # Its own connection, closed while the answer is still being made.
    async with (
        httpx.AsyncClient(timeout=60) as own,
        own.stream("POST", url, json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        await asyncio.sleep(after_s)


async def test_closed_sse_connections_leave_clean_logs_and_one_trace_each(
    mesh: Mesh, mesh_and_traces: tuple[Mesh, OtlpReceiver]
) -> None:
    _, receiver = mesh_and_traces
    slow_answers(mesh)
    old = {s.trace_id for s in receiver.spans()}
    sizes = log_sizes(mesh)
    url = f"http://{mesh.address('router_http')}/v1/chat/completions"

    async with httpx.AsyncClient(timeout=60) as client:
        # Staggered, so the disconnects land in different stages of the pipeline.
        await asyncio.gather(*(close_mid_stream(url, 0.02 * n) for n in range(STREAMS)))
        traces = traces_rooted_at(settled_spans(receiver), HTTP_ROOT, old)
        # The router keeps serving.
        answer = await client.post(
            url,
            json={"model": "chat", "messages": [{"role": "user", "content": "Still there?"}]},
            headers={"authorization": "Bearer dev"},
        )
    assert answer.status_code == 200, answer.text
    assert traces, "no stream got as far as its server span"
    for trace_id, spans in traces.items():
        assert_one_tree(trace_id, spans, HTTP_ROOT)
    for name, text in logged_since(mesh, sizes).items():
        assert not [word for word in NOISE if word in text], f"{name} logged:\n{text[-3000:]}"

"""The dispatcher process over gRPC against the simulator process: the caller's deadline
reaches the upstream call, and streams fail over only before their first token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import pytest_asyncio
from sluice.common.v1 import common_pb2
from sluice.dispatcher.v1 import dispatcher_service_pb2 as pb
from sluice.dispatcher.v1 import dispatcher_service_pb2_grpc as pb_grpc

from shared.mesh import Mesh
from tests.integration.dispatch_rig import MODEL, Simulator, running

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with running(tmp_path_factory.mktemp("dispatch-grpc"), "simulator", "dispatcher") as mesh:
        yield mesh


@pytest.fixture
def simulator(processes: Mesh) -> Iterator[Simulator]:
    sim = Simulator(f"http://{processes.address('simulator')}")
    sim.reset()
    yield sim
    sim.reset()


@pytest_asyncio.fixture(loop_scope="session")
async def stub(processes: Mesh) -> AsyncIterator[pb_grpc.RegionalDispatcherServiceAsyncStub]:
    async with grpc.aio.insecure_channel(processes.address("dispatcher")) as channel:
        yield pb_grpc.RegionalDispatcherServiceStub(channel)


def model_call(text: str = "Tell me about rivers in a few words.") -> common_pb2.ModelCall:
    return common_pb2.ModelCall(
        model=MODEL,
        messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)],
        sampling=common_pb2.SamplingParams(max_tokens=64),
    )


async def test_the_callers_deadline_cancels_the_upstream_call(
    simulator: Simulator, stub: pb_grpc.RegionalDispatcherServiceAsyncStub
) -> None:
    simulator.patch("us-east", ttft_median_ms=1500, ttft_p99_ms=1500)
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Dispatch(pb.DispatchRequest(call=model_call()), timeout=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 1.5
    # The dispatcher closed the upstream stream at the deadline instead of reading it to the end;
    # the simulator notices when it next writes, after its 1.5 s to the first token.
    # Waited on with a generous deadline: a busy machine can delay that write by seconds.
    deadline = time.monotonic() + 30
    for _ in range(3000):
        if simulator.stats("us-east")["cancelled"] == 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert simulator.stats("us-east")["cancelled"] == 1
    assert simulator.stats("eu-west")["received"] == 0


async def test_stream_fails_over_before_the_first_token(
    simulator: Simulator, stub: pb_grpc.RegionalDispatcherServiceAsyncStub
) -> None:
    simulator.patch("us-east", outage=True)
    events = [
        e
        async for e in stub.DispatchStream(pb.DispatchStreamRequest(call=model_call()), timeout=10)
    ]
    deltas = [e.content_delta for e in events if not e.HasField("completion")]
    completion = events[-1].completion
    assert len(deltas) > 1 and "".join(deltas) == completion.content
    assert completion.region != "us-east" and completion.attempts == 2
    assert completion.usage.output_tokens > 0 and completion.time_to_first_token.ToNanoseconds() > 0


async def test_stream_never_fails_over_after_the_first_token(
    simulator: Simulator, stub: pb_grpc.RegionalDispatcherServiceAsyncStub
) -> None:
    simulator.patch("us-east", stream_cut_rate=1.0)
    seen: list[str] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for event in stub.DispatchStream(
            pb.DispatchStreamRequest(call=model_call()), timeout=10
        ):
            seen.append(event.content_delta)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "stream broke after the first token" in (caught.value.details() or "")
    assert len(seen) == 1, "the caller got the first piece, then the error, never a second answer"
    assert simulator.stats("us-east")["faults"]["stream_cut"] == 1
    assert simulator.stats("eu-west")["received"] + simulator.stats("ap-south")["received"] == 0


async def test_a_whole_answer_fails_over_even_after_a_cut_stream(
    simulator: Simulator, stub: pb_grpc.RegionalDispatcherServiceAsyncStub
) -> None:
    simulator.patch("us-east", stream_cut_rate=1.0)
    reply = await stub.Dispatch(pb.DispatchRequest(call=model_call()), timeout=10)
    assert reply.completion.region != "us-east" and reply.completion.attempts == 2
    assert reply.completion.content and not reply.completion.hedged

"""Batch API jobs and packing through real processes (simulator, dispatcher, batcher): a job
runs to its results at the batch price, survives a SIGKILL of the batcher mid-job with the
provider creating it once, and packed calls make one upstream call with a safe fallback."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from sluice.batcher.v1 import batcher_service_pb2 as pb
from sluice.batcher.v1 import batcher_service_pb2_grpc as pb_grpc
from sluice.common.v1 import common_pb2

from shared.mesh import Mesh, free_ports
from tests.support import patch_region, reset_simulator, simulator_stats

pytestmark = pytest.mark.integration

SERVICES = ("simulator", "dispatcher", "batcher")
SYSTEM = "You sort customer messages into exactly one category. " * 30
PACK_WINDOW_MS = 300


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("batch-mesh")
    env = {
        "SLUICE_BATCHER_DATA_DIR": str(root / "batcher-data"),
        "SLUICE_BATCHER_POLL_INTERVAL_S": "0.2",
        "SLUICE_BATCHER_PACK_WINDOW_MS": str(PACK_WINDOW_MS),
        "SLUICE_SHUTDOWN_ANNOUNCE_S": "0.1",
    }
    running = Mesh.plan(free_ports(), root / "logs", env)
    try:
        for name in SERVICES:
            running.start(name)
        running.wait_ready(SERVICES)
        yield running
    finally:
        running.stop_all()


@pytest.fixture(autouse=True)
def fresh_simulator(mesh: Mesh) -> Iterator[None]:
    reset_simulator(mesh)
    sim(mesh, "POST", "/admin/batches/reset")
    yield
    reset_simulator(mesh)


@pytest_asyncio.fixture(loop_scope="session")
async def batcher(mesh: Mesh) -> AsyncIterator[pb_grpc.BatcherServiceAsyncStub]:
    async with grpc.aio.insecure_channel(mesh.address("batcher")) as channel:
        yield pb_grpc.BatcherServiceStub(channel)


def sim(mesh: Mesh, method: str, path: str, **body: Any) -> dict[str, Any]:
    url = f"http://{mesh.address('simulator')}{path}"
    response = httpx.request(method, url, json=body or None, timeout=5)
    response.raise_for_status()
    return dict(response.json())


def context(tenant: str = "acme", request_id: str = "") -> common_pb2.RequestContext:
    return common_pb2.RequestContext(tenant_id=tenant, request_id=request_id)


def call(question: str, model: str = "gpt-4o", system: str = "") -> common_pb2.ModelCall:
    messages = [common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=question)]
    if system:
        messages.insert(0, common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=system))
    return common_pb2.ModelCall(
        model=model, messages=messages, sampling=common_pb2.SamplingParams(max_tokens=400)
    )


def items(*questions: str) -> list[pb.BatchItem]:
    return [pb.BatchItem(custom_id=f"q{n}", call=call(q)) for n, q in enumerate(questions)]


async def wait_for(
    batcher: pb_grpc.BatcherServiceAsyncStub, job_id: str, *statuses: int, timeout_s: float = 60
) -> pb.BatchJob:
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                job = (await batcher.Get(pb.GetRequest(context=context(), job_id=job_id))).job
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:  # a restarting batcher
                    raise
            else:
                if job.status in statuses:
                    return job
            await asyncio.sleep(0.1)


async def test_a_submitted_job_completes_with_results_at_half_the_interactive_cost(
    mesh: Mesh, batcher: pb_grpc.BatcherServiceAsyncStub
) -> None:
    sim(mesh, "POST", "/admin/batches", completion_delay_s=0.5)
    submitted = await batcher.Submit(
        pb.SubmitRequest(
            context=context(request_id=uuid.uuid4().hex),
            items=items(
                "What is the capital of France?", "Explain DNS", "bad [sim:batch-bad-line]"
            ),
        ),
        timeout=10,
    )
    assert submitted.job.status == pb.JOB_STATUS_QUEUED and submitted.job.total == 3
    job = await wait_for(batcher, submitted.job.job_id, pb.JOB_STATUS_COMPLETED)
    assert (job.completed, job.failed) == (2, 1)
    first, second, bad = job.results
    assert first.custom_id == "q0" and first.completion.content == "The capital of France is Paris."
    assert second.completion.usage.output_tokens > 0 and second.completion.region == "us-east"
    assert "could not be read" in bad.error
    assert abs(job.cost_nano_usd * 2 - job.interactive_cost_nano_usd) <= 2
    stats = sim(mesh, "GET", "/admin/batches")
    assert stats["batches_created"] == 1 and stats["requests_answered"] == 3
    assert simulator_stats(mesh)["regions"]["us-east"]["received"] == 0, "no interactive calls"


async def test_the_batcher_killed_mid_job_finishes_it_exactly_once_after_restart(
    mesh: Mesh, batcher: pb_grpc.BatcherServiceAsyncStub
) -> None:
    sim(mesh, "POST", "/admin/batches", completion_delay_s=3)
    request_id = uuid.uuid4().hex
    submit = pb.SubmitRequest(
        context=context(request_id=request_id), items=items(*(f"Question {n}" for n in range(5)))
    )
    submitted = await batcher.Submit(submit, timeout=10)
    await wait_for(batcher, submitted.job.job_id, pb.JOB_STATUS_IN_PROGRESS)
    assert mesh.stop("batcher", signal.SIGKILL) == -signal.SIGKILL
    mesh.start("batcher")
    mesh.wait_ready(("batcher",))
    again = await batcher.Submit(submit, timeout=10)
    assert again.existing and again.job.job_id == submitted.job.job_id
    job = await wait_for(batcher, submitted.job.job_id, pb.JOB_STATUS_COMPLETED)
    assert job.completed == 5 and all(r.completion.content for r in job.results)
    stats = sim(mesh, "GET", "/admin/batches")
    assert stats["files_uploaded"] == 1 and stats["batches_created"] == 1
    assert stats["requests_answered"] == 5


async def test_cancel_stops_a_job_before_the_provider_runs_it(
    mesh: Mesh, batcher: pb_grpc.BatcherServiceAsyncStub
) -> None:
    sim(mesh, "POST", "/admin/batches", completion_delay_s=30)
    submitted = await batcher.Submit(pb.SubmitRequest(context=context(), items=items("x")))
    await wait_for(batcher, submitted.job.job_id, pb.JOB_STATUS_IN_PROGRESS)
    cancelling = await batcher.Cancel(
        pb.CancelRequest(context=context(), job_id=submitted.job.job_id)
    )
    assert cancelling.job.status == pb.JOB_STATUS_CANCELLING
    job = await wait_for(batcher, submitted.job.job_id, pb.JOB_STATUS_CANCELLED)
    assert "cancelled" in job.results[0].error
    assert sim(mesh, "GET", "/admin/batches")["batches_cancelled"] == 1


async def test_bad_job_requests_get_clear_status_codes(
    batcher: pb_grpc.BatcherServiceAsyncStub,
) -> None:
    mixed = [pb.BatchItem(call=call("a")), pb.BatchItem(call=call("b", model="Qwen/Qwen3-8B"))]
    cases = [
        (pb.SubmitRequest(context=context(), items=mixed), grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.SubmitRequest(context=context(tenant=""), items=items("a")),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]
    for request, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await batcher.Submit(request, timeout=5)
        assert raised.value.code() == code
    submitted = await batcher.Submit(pb.SubmitRequest(context=context(), items=items("a")))
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await batcher.Get(pb.GetRequest(context=context("other"), job_id=submitted.job.job_id))
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND


async def execute_all(
    batcher: pb_grpc.BatcherServiceAsyncStub, questions: list[str], *, packable: bool = True
) -> list[pb.ExecuteResponse]:
    return list(
        await asyncio.gather(
            *(
                batcher.Execute(
                    pb.ExecuteRequest(
                        context=context(), call=call(q, system=SYSTEM), packable=packable
                    ),
                    timeout=30,
                )
                for q in questions
            )
        )
    )


async def test_packable_calls_share_one_upstream_call_with_the_same_answers(
    mesh: Mesh, batcher: pb_grpc.BatcherServiceAsyncStub
) -> None:
    questions = [f"Message {n}: where is my parcel? ({uuid.uuid4().hex[:6]})" for n in range(4)]
    packed = await execute_all(batcher, questions)
    assert simulator_stats(mesh)["regions"]["us-east"]["received"] == 1
    alone = await execute_all(batcher, questions, packable=False)
    assert [p.completion.content for p in packed] == [a.completion.content for a in alone]
    assert {p.packed_size for p in packed} == {4} and not any(a.packed_size for a in alone)
    saved = sum(p.input_tokens_saved for p in packed)
    assert saved > 2 * 300, "the system prompt was sent once instead of four times"
    assert sum(p.completion.usage.input_tokens for p in packed) + saved == sum(
        a.completion.usage.input_tokens for a in alone
    )


@pytest.mark.parametrize(
    ("marker", "upstream_calls"), [("[sim:pack-drop]", 2), ("[sim:pack-bad]", 4)]
)
async def test_a_broken_packed_reply_falls_back_and_nobody_gets_anothers_answer(
    mesh: Mesh, batcher: pb_grpc.BatcherServiceAsyncStub, marker: str, upstream_calls: int
) -> None:
    tag = uuid.uuid4().hex[:6]
    questions = [f"First {tag}", f"Second {tag} {marker}", f"Third {tag}"]
    packed = await execute_all(batcher, questions)
    assert simulator_stats(mesh)["regions"]["us-east"]["received"] == upstream_calls
    alone = await execute_all(batcher, questions, packable=False)
    assert [p.completion.content for p in packed] == [a.completion.content for a in alone]
    fell_back = [bool(p.pack_fallback_reason) for p in packed]
    assert fell_back == ([False, True, False] if upstream_calls == 2 else [True] * 3)


async def test_a_deadline_shorter_than_the_window_is_sent_at_once(
    mesh: Mesh, batcher: pb_grpc.BatcherServiceAsyncStub
) -> None:
    patch_region(mesh, "us-east", ttft_median_ms=1, ttft_p99_ms=2)
    request = pb.ExecuteRequest(
        context=context(), call=call(f"Urgent {uuid.uuid4().hex}", system=SYSTEM), packable=True
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    # The batcher keeps 2 s of a deadline for the call itself: 1.5 s leaves no time to wait.
    response = await batcher.Execute(request, timeout=1.5)
    assert response.packed_size == 0 and loop.time() - started < PACK_WINDOW_MS / 1000

"""DeferredService through the real mesh: a job runs on the provider's Batch API at the batch
price, its cost is charged to the tenant's ledger once, and bad job ids get clear statuses."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from sluice.common.v1 import common_pb2
from sluice.router.v1 import deferred_service_pb2 as pb
from sluice.router.v1 import deferred_service_pb2_grpc as pb_grpc
from sluice.router.v1 import spend_service_pb2 as spend_pb
from sluice.router.v1 import spend_service_pb2_grpc as spend_grpc

from shared.mesh import Mesh
from tests.support import DEV_KEY

pytestmark = pytest.mark.integration


def request(custom_id: str, text: str) -> pb.DeferredRequest:
    return pb.DeferredRequest(
        custom_id=custom_id,
        messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)],
    )


async def finished(stub: pb_grpc.DeferredServiceAsyncStub, job_id: str) -> pb.DeferredJob:
    async with asyncio.timeout(60):
        while True:
            job = (
                await stub.GetDeferred(pb.GetDeferredRequest(job_id=job_id), metadata=DEV_KEY)
            ).job
            if job.status == pb.DEFERRED_STATUS_COMPLETED:
                return job
            await asyncio.sleep(0.2)


async def test_job_completes_at_the_batch_price_and_is_charged_once(
    channel: grpc.aio.Channel, mesh: Mesh
) -> None:
    stub = pb_grpc.DeferredServiceStub(channel)
    spend = spend_grpc.SpendServiceStub(channel)
    before = await spend.GetSpend(spend_pb.GetSpendRequest(), metadata=DEV_KEY)
    submitted = await stub.SubmitDeferred(
        pb.SubmitDeferredRequest(
            context=common_pb2.RequestContext(request_id=uuid.uuid4().hex),
            requests=[
                request("capital", "What is the capital of France?"),
                request("dns", f"Explain DNS ({uuid.uuid4().hex[:6]})"),
            ],
        ),
        metadata=DEV_KEY,
        timeout=30,
    )
    job = submitted.job
    assert job.job_id.startswith("dj_") and job.total == 2 and job.model == "gpt-4o"
    assert submitted.policy_version.startswith("default-") and not submitted.existing
    done = await finished(stub, job.job_id)
    again = await finished(stub, job.job_id)
    assert [a.custom_id for a in done.answers] == ["capital", "dns"]
    assert done.answers[0].content == "The capital of France is Paris."
    assert done.cost_nano_usd == again.cost_nano_usd > 0
    assert abs(done.cost_nano_usd * 2 - done.interactive_cost_nano_usd) <= 2
    after = await spend.GetSpend(spend_pb.GetSpendRequest(), metadata=DEV_KEY)
    assert after.today_nano_usd - before.today_nano_usd == done.cost_nano_usd
    assert after.charged_requests_today - before.charged_requests_today == 1


async def test_bad_and_unknown_job_ids_get_clear_statuses(
    channel: grpc.aio.Channel, mesh: Mesh
) -> None:
    stub = pb_grpc.DeferredServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.GetDeferred(pb.GetDeferredRequest(job_id="job-1"), metadata=DEV_KEY)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is not a deferred job id" in (bad.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.CancelDeferred(
            pb.CancelDeferredRequest(job_id="dj_0123456789abcdef_job-nope"), metadata=DEV_KEY
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no deferred job 'dj_0123456789abcdef_job-nope'" in (unknown.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await stub.SubmitDeferred(pb.SubmitDeferredRequest(), metadata=DEV_KEY)
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requests is empty" in (empty.value.details() or "")

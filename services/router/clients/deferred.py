"""The batcher's Batch API jobs behind the router's deferred work (BatchPort).

A job lives in the store of the batcher replica that accepted it. Submit goes to the replica
its routing key ranks first (the next one if that is unreachable); Get and Cancel ask the
replicas in the same order until one knows the job, so any router replica finds it, and a
replica added since only costs one NOT_FOUND hop.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
from sluice.batcher.v1 import batcher_service_pb2 as batcher_pb
from sluice.common.v1 import common_pb2

from services.router.clients.batchers import BatcherReplicas, ask_in_turn
from services.router.clients.common import Clock, stage_timeout
from services.router.deferred import (
    DeferredAnswer,
    DeferredPlan,
    JobReport,
    JobStatus,
)
from shared.convert import (
    finish_from_proto,
    response_format_to_proto,
    sampling_to_proto,
    turns_to_proto,
    usage_from_proto,
)
from shared.errors import NotFound, Unavailable

_STATUS = {
    batcher_pb.JOB_STATUS_QUEUED: JobStatus.QUEUED,
    batcher_pb.JOB_STATUS_IN_PROGRESS: JobStatus.IN_PROGRESS,
    batcher_pb.JOB_STATUS_CANCELLING: JobStatus.CANCELLING,
    batcher_pb.JOB_STATUS_COMPLETED: JobStatus.COMPLETED,
    batcher_pb.JOB_STATUS_FAILED: JobStatus.FAILED,
    batcher_pb.JOB_STATUS_CANCELLED: JobStatus.CANCELLED,
}
if TYPE_CHECKING:
    from services.router.clients.batchers import Stub

    Call = Callable[[Stub, float], Awaitable[batcher_pb.BatchJob]]


def _items(plan: DeferredPlan) -> list[batcher_pb.BatchItem]:
    items = []
    for item in plan.items:
        sampling = sampling_to_proto(item.sampling)
        sampling.max_tokens = sampling.max_tokens or plan.max_tokens
        call = common_pb2.ModelCall(
            model=plan.model,
            messages=turns_to_proto(item.turns),
            sampling=sampling,
            tier=plan.tier,
            response_format=response_format_to_proto(item.response_format),
        )
        items.append(batcher_pb.BatchItem(custom_id=item.custom_id, call=call))
    return items


def report_from_proto(job: batcher_pb.BatchJob, existing: bool = False) -> JobReport:
    answers = tuple(
        DeferredAnswer(
            custom_id=result.custom_id,
            content=result.completion.content,
            finish=finish_from_proto(result.completion.finish_reason),
            usage=usage_from_proto(result.completion.usage),
            cost_nano_usd=result.completion.cost_nano_usd,
            error=result.error,
        )
        for result in job.results
    )
    return JobReport(
        batcher_job_id=job.job_id,
        status=_STATUS[job.status],
        model=job.model,
        total=job.total,
        completed=job.completed,
        failed=job.failed,
        answers=answers,
        cost_nano_usd=job.cost_nano_usd,
        interactive_cost_nano_usd=job.interactive_cost_nano_usd,
        error=job.error,
        existing=existing,
    )


class DeferredClient:
    def __init__(self, batchers: BatcherReplicas, clock: Clock = time.monotonic) -> None:
        self._batchers = batchers
        self._clock = clock

    async def submit(
        self, key: str, request_id: str, plan: DeferredPlan, deadline: float
    ) -> JobReport:
        submit = batcher_pb.SubmitRequest(
            context=common_pb2.RequestContext(
                tenant_id=plan.tenant.tenant_id, request_id=request_id
            ),
            items=_items(plan),
        )
        response, down = await ask_in_turn(
            self._batchers.ranked(key.encode())[:2],
            lambda batcher: batcher.Submit(
                submit, timeout=stage_timeout(deadline, None, self._clock)
            ),
        )
        if response is None:
            reasons = "; ".join(down)
            raise Unavailable(f"no batcher replica reachable for deferred work ({reasons})")
        return report_from_proto(response.job, response.existing)

    async def get(self, key: str, tenant_id: str, job_id: str, deadline: float) -> JobReport:
        request = batcher_pb.GetRequest(
            context=common_pb2.RequestContext(tenant_id=tenant_id), job_id=job_id
        )

        async def get(stub: Stub, timeout_s: float) -> batcher_pb.BatchJob:
            response: batcher_pb.GetResponse = await stub.Get(request, timeout=timeout_s)
            return response.job

        return report_from_proto(await self._find(key, job_id, deadline, get))

    async def cancel(self, key: str, tenant_id: str, job_id: str, deadline: float) -> JobReport:
        request = batcher_pb.CancelRequest(
            context=common_pb2.RequestContext(tenant_id=tenant_id), job_id=job_id
        )

        async def cancel(stub: Stub, timeout_s: float) -> batcher_pb.BatchJob:
            response: batcher_pb.CancelResponse = await stub.Cancel(request, timeout=timeout_s)
            return response.job

        return report_from_proto(await self._find(key, job_id, deadline, cancel))

    async def _find(
        self, key: str, job_id: str, deadline: float, call: Call
    ) -> batcher_pb.BatchJob:
        """Asks the replicas in ranking order until one has the job."""
        job, down = await ask_in_turn(
            self._batchers.ranked(key.encode()),
            lambda batcher: call(batcher, stage_timeout(deadline, None, self._clock)),
            pass_on=lambda error: error.code() == grpc.StatusCode.NOT_FOUND,
        )
        if job is not None:
            return job
        if down:
            raise Unavailable(
                f"batcher job {job_id} is on none of the reachable batcher replicas; "
                f"unreachable: {'; '.join(down)}"
            )
        raise NotFound(f"no batcher replica holds job {job_id} for this tenant")

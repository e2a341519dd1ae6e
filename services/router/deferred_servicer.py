"""Maps DeferredService to the deferred-work domain (services/router/deferred.py)."""

from __future__ import annotations

import time

import grpc
from sluice.router.v1 import deferred_service_pb2 as pb
from sluice.router.v1 import deferred_service_pb2_grpc as pb_grpc

from services.router.admission import api_key_from_metadata
from services.router.deferred import DeferredItem, DeferredWork, JobReport, JobStatus
from services.router.public_errors import public_error
from shared.convert import (
    finish_to_proto,
    response_format_from_proto,
    sampling_from_proto,
    turns_from_proto,
    usage_to_proto,
)
from shared.errors import SluiceError, abort_with
from shared.grpc_server import caller_deadline

ORIGIN = "router"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DeferredService"].full_name
Context = grpc.aio.ServicerContext[object, object]
# Submitting 50,000 requests is one durable write at the batcher, not a model call.
DEFAULT_DEADLINE_S = 60.0

_STATUS = {
    JobStatus.QUEUED: pb.DEFERRED_STATUS_QUEUED,
    JobStatus.IN_PROGRESS: pb.DEFERRED_STATUS_IN_PROGRESS,
    JobStatus.CANCELLING: pb.DEFERRED_STATUS_CANCELLING,
    JobStatus.COMPLETED: pb.DEFERRED_STATUS_COMPLETED,
    JobStatus.FAILED: pb.DEFERRED_STATUS_FAILED,
    JobStatus.CANCELLED: pb.DEFERRED_STATUS_CANCELLED,
}


def job_to_proto(job_id: str, report: JobReport) -> pb.DeferredJob:
    job = pb.DeferredJob(
        job_id=job_id,
        status=_STATUS[report.status],
        model=report.model,
        total=report.total,
        completed=report.completed,
        failed=report.failed,
        cost_nano_usd=report.cost_nano_usd,
        interactive_cost_nano_usd=report.interactive_cost_nano_usd,
        error=report.error,
    )
    job.answers.extend(
        pb.DeferredAnswer(
            custom_id=answer.custom_id,
            content=answer.content,
            finish_reason=finish_to_proto(answer.finish),
            usage=usage_to_proto(answer.usage),
            cost_nano_usd=answer.cost_nano_usd,
            error=answer.error,
        )
        for answer in report.answers
    )
    return job


def items_from_proto(requests: list[pb.DeferredRequest]) -> list[DeferredItem]:
    return [
        DeferredItem(
            custom_id=request.custom_id,
            turns=turns_from_proto(request.messages),
            sampling=sampling_from_proto(request.sampling),
            response_format=response_format_from_proto(request.response_format),
        )
        for request in requests
    ]


class DeferredServicer(pb_grpc.DeferredServiceServicer):
    def __init__(self, work: DeferredWork) -> None:
        self._work = work

    @staticmethod
    def _api_key(context: Context) -> str:
        return api_key_from_metadata(context.invocation_metadata() or ())

    @staticmethod
    def _deadline(context: Context) -> float:
        deadline = caller_deadline(context)
        return time.monotonic() + DEFAULT_DEADLINE_S if deadline is None else deadline

    async def SubmitDeferred(  # noqa: N802 - named by the proto
        self, request: pb.SubmitDeferredRequest, context: Context
    ) -> pb.SubmitDeferredResponse:
        try:
            submitted = await self._work.submit(
                self._api_key(context),
                request.context.request_id,
                request.model_class,
                items_from_proto(list(request.requests)),
                self._deadline(context),
            )
        except SluiceError as error:
            await abort_with(context, ORIGIN, public_error(error))
        return pb.SubmitDeferredResponse(
            job=job_to_proto(submitted.job_id, submitted.report),
            existing=submitted.report.existing,
            policy_version=submitted.plan.policy_version,
        )

    async def GetDeferred(  # noqa: N802 - named by the proto
        self, request: pb.GetDeferredRequest, context: Context
    ) -> pb.GetDeferredResponse:
        try:
            report = await self._work.get(
                self._api_key(context), request.job_id, self._deadline(context)
            )
        except SluiceError as error:
            await abort_with(context, ORIGIN, public_error(error))
        return pb.GetDeferredResponse(job=job_to_proto(request.job_id, report))

    async def CancelDeferred(  # noqa: N802 - named by the proto
        self, request: pb.CancelDeferredRequest, context: Context
    ) -> pb.CancelDeferredResponse:
        try:
            report = await self._work.cancel(
                self._api_key(context), request.job_id, self._deadline(context)
            )
        except SluiceError as error:
            await abort_with(context, ORIGIN, public_error(error))
        return pb.CancelDeferredResponse(job=job_to_proto(request.job_id, report))

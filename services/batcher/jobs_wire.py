"""Batch job messages: proto ↔ the job domain (services/batcher/jobs.py)."""

from __future__ import annotations

from sluice.batcher.v1 import batcher_service_pb2 as pb
from sluice.common.v1 import common_pb2

from services.batcher.jobs import ItemRequest, ItemResult, Job, JobState
from shared.convert import (
    finish_to_proto,
    response_format_from_proto,
    sampling_from_proto,
    turns_from_proto,
    usage_to_proto,
)
from shared.convert_tools import tools_from_proto

_STATUS = {
    JobState.PENDING: pb.JOB_STATUS_QUEUED,
    JobState.UPLOADING: pb.JOB_STATUS_QUEUED,
    JobState.UPLOADED: pb.JOB_STATUS_QUEUED,
    JobState.CREATING: pb.JOB_STATUS_QUEUED,
    JobState.SUBMITTED: pb.JOB_STATUS_IN_PROGRESS,
    JobState.CANCELLING: pb.JOB_STATUS_CANCELLING,
    JobState.COMPLETED: pb.JOB_STATUS_COMPLETED,
    JobState.FAILED: pb.JOB_STATUS_FAILED,
    JobState.CANCELLED: pb.JOB_STATUS_CANCELLED,
}


def items_from_proto(items: list[pb.BatchItem]) -> list[ItemRequest]:
    """The submitted items; an empty custom_id becomes "item-<index>"."""
    return [
        ItemRequest(
            custom_id=item.custom_id or f"item-{index}",
            model=item.call.model,
            turns=turns_from_proto(item.call.messages),
            sampling=sampling_from_proto(item.call.sampling),
            response_format=response_format_from_proto(item.call.response_format),
            tools=tools_from_proto(item.call.tools),
        )
        for index, item in enumerate(items)
    ]


def status_of(job: Job) -> pb.JobStatus.ValueType:
    # A cancel that is asked for but not yet carried out already shows as CANCELLING.
    if job.cancel_requested and not job.state.terminal:
        return pb.JOB_STATUS_CANCELLING
    return _STATUS[job.state]


def _result_to_proto(result: ItemResult, job: Job, region: str) -> pb.BatchResult:
    if not result.ok:
        return pb.BatchResult(custom_id=result.custom_id, error=result.error)
    completion = common_pb2.Completion(
        content=result.content,
        finish_reason=finish_to_proto(result.finish),
        model=result.model,
        region=region,
        endpoint=job.endpoint,
        usage=usage_to_proto(result.usage),
        cost_nano_usd=result.cost_nano_usd,
        attempts=1,
    )
    return pb.BatchResult(custom_id=result.custom_id, completion=completion)


def job_to_proto(job: Job, region: str = "") -> pb.BatchJob:
    """The job as the RPCs report it; region is that of the job's endpoint."""
    completed = [r for r in job.results if r.ok]
    message = pb.BatchJob(
        job_id=job.job_id,
        status=status_of(job),
        model=job.model,
        endpoint=job.endpoint,
        total=len(job.custom_ids),
        completed=len(completed),
        failed=len(job.results) - len(completed),
        cost_nano_usd=sum(r.cost_nano_usd for r in completed),
        interactive_cost_nano_usd=sum(r.interactive_cost_nano_usd for r in completed),
        error=job.error,
        provider_batch_id=job.batch_id,
    )
    message.results.extend(_result_to_proto(r, job, region) for r in job.results)
    return message

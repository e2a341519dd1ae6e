"""Maps BatcherService RPCs onto the executor and the job runner; no logic lives here."""

from __future__ import annotations

import asyncio
import math

import grpc
from opentelemetry import trace
from sluice.batcher.v1 import batcher_service_pb2 as pb
from sluice.batcher.v1 import batcher_service_pb2_grpc as pb_grpc

from services.batcher.executor import Executor
from services.batcher.job_runner import JobRunner, NoEndpoint
from services.batcher.jobs import InvalidJob, Job
from services.batcher.jobs_wire import items_from_proto, job_to_proto
from services.batcher.provider_batches import EndpointTable
from services.batcher.spans import JOB_ID, PACK_FALLBACK, PACK_TOKENS_SAVED, PACKED_SIZE
from services.batcher.store import UnknownJob
from shared import telemetry as attrs
from shared.errors import (
    ORIGIN_METADATA_KEY,
    InvalidRequest,
    NotFound,
    SluiceError,
    Unavailable,
    abort_with,
    error_origin,
)

ORIGIN = "batcher"
Context = grpc.aio.ServicerContext[object, object]


class BatcherServicer(pb_grpc.BatcherServiceServicer):
    def __init__(
        self,
        executor: Executor,
        jobs: JobRunner,
        endpoints: EndpointTable,
        dispatcher_addr: str,
    ) -> None:
        self._executor = executor
        self._jobs = jobs
        self._endpoints = endpoints
        self._dispatcher_addr = dispatcher_addr

    async def Execute(self, request: pb.ExecuteRequest, context: Context) -> pb.ExecuteResponse:
        if not request.call.model or not request.call.messages:
            await abort_with(
                context, ORIGIN, InvalidRequest("call.model and call.messages are required")
            )
        timeout = context.time_remaining()
        now = asyncio.get_running_loop().time()
        deadline = math.inf if timeout is None else now + timeout
        try:
            shared = await self._executor.execute(request, timeout, deadline)
        except grpc.aio.AioRpcError as error:
            await self._relay(context, error)
        except SluiceError as error:
            await abort_with(context, ORIGIN, error)
        executed = shared.value
        trace.get_current_span().set_attributes(
            {
                attrs.STAGE: "batcher",
                attrs.BATCH_GROUP_SIZE: shared.group_size,
                attrs.BATCH_SHARED: shared.joined,
                PACKED_SIZE: executed.packed_size,
                PACK_TOKENS_SAVED: executed.input_tokens_saved,
                PACK_FALLBACK: bool(executed.fallback_reason),
                # A caller that joined another's flight adds no upstream cost.
                attrs.COST_USD: 0.0
                if shared.joined
                else attrs.usd(executed.completion.cost_nano_usd),
            }
        )
        return pb.ExecuteResponse(
            completion=executed.completion,
            shared=shared.joined,
            group_size=shared.group_size,
            packed_size=executed.packed_size,
            input_tokens_saved=executed.input_tokens_saved,
            pack_fallback_reason=executed.fallback_reason,
        )

    async def Submit(  # noqa: N802 - named by the proto
        self, request: pb.SubmitRequest, context: Context
    ) -> pb.SubmitResponse:
        if not request.context.tenant_id:
            await abort_with(context, ORIGIN, InvalidRequest("context.tenant_id is required"))
        region = request.items[0].call.preferred_region if request.items else ""
        try:
            items = items_from_proto(list(request.items))
            job, existing = self._jobs.submit(
                request.context.tenant_id, request.context.request_id, items, region
            )
        except (InvalidJob, NoEndpoint) as error:
            await abort_with(context, ORIGIN, InvalidRequest(str(error)))
        except SluiceError as error:
            await abort_with(context, ORIGIN, error)
        trace.get_current_span().set_attributes(
            {attrs.STAGE: "batcher", JOB_ID: job.job_id, attrs.BATCH_GROUP_SIZE: len(items)}
        )
        return pb.SubmitResponse(job=self._job(job), existing=existing)

    async def Get(  # noqa: N802 - named by the proto
        self, request: pb.GetRequest, context: Context
    ) -> pb.GetResponse:
        try:
            job = self._jobs.get(request.context.tenant_id, request.job_id)
        except UnknownJob:
            await abort_with(context, ORIGIN, NotFound(f"no job {request.job_id!r}"))
        return pb.GetResponse(job=self._job(job))

    async def Cancel(  # noqa: N802 - named by the proto
        self, request: pb.CancelRequest, context: Context
    ) -> pb.CancelResponse:
        try:
            job = self._jobs.cancel(request.context.tenant_id, request.job_id)
        except UnknownJob:
            await abort_with(context, ORIGIN, NotFound(f"no job {request.job_id!r}"))
        return pb.CancelResponse(job=self._job(job))

    def _job(self, job: Job) -> pb.BatchJob:
        endpoint = self._endpoints.named(job.endpoint)
        return job_to_proto(job, endpoint.region if endpoint else "")

    async def _relay(self, context: Context, error: grpc.aio.AioRpcError) -> None:
        """Passes the dispatcher's own status through; a dead dispatcher becomes UNAVAILABLE."""
        origin = error_origin(error)
        if origin is None:
            await abort_with(
                context,
                ORIGIN,
                Unavailable(
                    f"dispatcher unreachable at {self._dispatcher_addr}: {error.details()}"
                ),
            )
        context.set_trailing_metadata(((ORIGIN_METADATA_KEY, origin),))
        await context.abort(error.code(), error.details() or "")

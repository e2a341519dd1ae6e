"""Maps RouterService RPCs to admission and the pipeline; no routing logic lives here."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Protocol

import grpc
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as pb
from sluice.router.v1 import router_service_pb2_grpc as pb_grpc

from services.router.admission import Admission, Asked, api_key_from_metadata
from services.router.answering import answer_unary
from services.router.model import CacheMode, ChatRequest, Outcome, RouteResult, StageName, TierDelta
from services.router.pipeline import Pipeline
from services.router.public_errors import public_error
from shared.convert import (
    duration_from_seconds,
    finish_to_proto,
    response_format_from_proto,
    sampling_from_proto,
    turns_from_proto,
    usage_to_proto,
)
from shared.convert_tools import choice_delta_to_proto, choices_to_proto, tools_from_proto
from shared.errors import InvalidRequest, SluiceError, abort_with
from shared.grpc_server import caller_deadline
from shared.streams import relay
from shared.telemetry import current_trace_id, with_request_baggage

ORIGIN = "router"
Context = grpc.aio.ServicerContext[object, object]

_CACHE_MODES = {
    pb.CACHE_MODE_UNSPECIFIED: None,
    pb.CACHE_MODE_ENABLED: CacheMode.ENABLED,
    pb.CACHE_MODE_EXACT_ONLY: CacheMode.EXACT_ONLY,
    pb.CACHE_MODE_BYPASS: CacheMode.BYPASS,
}


def cache_mode_from_proto(value: pb.CacheMode.ValueType) -> CacheMode | None:
    """The cache mode asked for; None for "the default". An enum number this router does not
    know (a newer client, or garbage) is refused rather than read as the default."""
    if value not in _CACHE_MODES:
        known = ", ".join(f"{pb.CacheMode.Name(number)} ({number})" for number in _CACHE_MODES)
        raise InvalidRequest(f"cache_mode {value} is unknown; use one of {known}")
    return _CACHE_MODES[value]


_STAGES = {
    StageName.CACHE: common_pb2.STAGE_CACHE,
    StageName.COMPRESSOR: common_pb2.STAGE_COMPRESSOR,
    StageName.BATCHER: common_pb2.STAGE_BATCHER,
    StageName.TIER: common_pb2.STAGE_TIER,
    StageName.JUDGE: common_pb2.STAGE_JUDGE,
}
_OUTCOMES = {
    Outcome.USED: common_pb2.STAGE_OUTCOME_USED,
    Outcome.PASSED: common_pb2.STAGE_OUTCOME_PASSED,
    Outcome.REJECTED: common_pb2.STAGE_OUTCOME_REJECTED,
    Outcome.SKIPPED: common_pb2.STAGE_OUTCOME_SKIPPED,
    Outcome.NOT_APPLICABLE: common_pb2.STAGE_OUTCOME_NOT_APPLICABLE,
}


class _ChatRequestMessage(Protocol):
    """The fields CompleteRequest and CompleteStreamRequest share."""

    @property
    def context(self) -> common_pb2.RequestContext: ...
    @property
    def model_class(self) -> str: ...
    @property
    def messages(self) -> object: ...
    @property
    def sampling(self) -> common_pb2.SamplingParams: ...
    @property
    def cache_mode(self) -> pb.CacheMode.ValueType: ...
    @property
    def response_format(self) -> common_pb2.ResponseFormat: ...
    @property
    def tools(self) -> common_pb2.ToolSet: ...


def cost_breakdown(result: RouteResult) -> common_pb2.CostBreakdown:
    return common_pb2.CostBreakdown(
        stages=[
            common_pb2.StageCost(
                stage=_STAGES[line.stage],
                outcome=_OUTCOMES[line.outcome],
                detail=line.detail,
                tier=line.tier,
                model=line.model,
                region=line.region,
                usage=usage_to_proto(line.usage),
                cost_nano_usd=line.cost_nano_usd,
                latency=duration_from_seconds(line.latency_s),
            )
            for line in result.lines
        ],
        total_cost_nano_usd=result.total_cost_nano_usd,
        baseline_model=result.baseline_model,
        baseline_cost_nano_usd=result.baseline_cost_nano_usd,
        cost_avoided_nano_usd=result.cost_avoided_nano_usd,
    )


def complete_response(result: RouteResult) -> pb.CompleteResponse:
    return pb.CompleteResponse(
        request_id=result.request_id,
        content=result.content,
        finish_reason=finish_to_proto(result.finish),
        model=result.model,
        tier=result.tier,
        region=result.region,
        usage=usage_to_proto(result.usage),
        cost=cost_breakdown(result),
        trace_id=current_trace_id(),
        cache_hit=result.cache_hit,
        policy_version=result.policy_version,
        choices=choices_to_proto(result.all_choices()),
    )


def content_delta(event: TierDelta) -> pb.ContentDelta:
    """A streamed piece: plain text of choice 0, or a piece with its choice, tool-call
    fragments, refusal and logprobs."""
    delta = pb.ContentDelta(attempt=event.attempt, tier=event.tier, text=event.text)
    piece = event.piece
    if piece is not None:
        delta.text = piece.content
        delta.choice_index = piece.index
        delta.refusal = piece.refusal
        proto = choice_delta_to_proto(piece)
        delta.tool_calls.extend(proto.tool_calls)
        delta.logprobs.extend(proto.logprobs)
    return delta


def _api_key(context: Context) -> str:
    return api_key_from_metadata(context.invocation_metadata() or ())


def _asked(request: _ChatRequestMessage) -> Asked:
    return Asked(
        request_id=request.context.request_id,
        model_class=request.model_class,
        turns=turns_from_proto(request.messages),  # type: ignore[arg-type]
        sampling=sampling_from_proto(request.sampling),
        cache_mode=cache_mode_from_proto(request.cache_mode),
        max_cost_nano_usd=request.context.max_cost_nano_usd,
        response_format=response_format_from_proto(request.response_format),
        tools=tools_from_proto(request.tools),
        end_user=request.context.end_user,
        metadata=tuple(sorted(request.context.metadata.items())),
    )


class RouterServicer(pb_grpc.RouterServiceServicer):
    def __init__(self, admission: Admission, pipeline: Pipeline, default_deadline_s: float) -> None:
        self._admission = admission
        self._pipeline = pipeline
        self._default_deadline_s = default_deadline_s

    async def _admit(self, request: _ChatRequestMessage, context: Context) -> ChatRequest:
        return await self._admission.admit_async(_api_key(context), _asked(request))

    def _deadline(self, context: Context) -> float:
        deadline = caller_deadline(context)
        return time.monotonic() + self._default_deadline_s if deadline is None else deadline

    async def Complete(self, request: pb.CompleteRequest, context: Context) -> pb.CompleteResponse:
        try:
            draft = await self._admission.draft_async(_api_key(context), _asked(request))
            _, result = await answer_unary(
                self._admission, self._pipeline, draft, self._deadline(context)
            )
        except SluiceError as error:
            await abort_with(context, ORIGIN, public_error(error))
        return complete_response(result)

    async def CompleteStream(
        self, request: pb.CompleteStreamRequest, context: Context
    ) -> AsyncIterator[pb.CompleteStreamResponse]:
        try:
            chat = await self._admit(request, context)
            # The pipeline runs in a task of its own with the baggage attached there, so a
            # cancelled stream unwinds in the context that attached it (shared/streams.py).
            baggage = with_request_baggage(chat.tenant.tenant_id, chat.policy_version)
            events = self._pipeline.run(chat, self._deadline(context), stream=True)
            async with aclosing(relay(events, baggage)) as relayed:
                async for event in relayed:
                    if isinstance(event, TierDelta):
                        yield pb.CompleteStreamResponse(delta=content_delta(event))
                    else:
                        yield pb.CompleteStreamResponse(summary=complete_response(event))
        except SluiceError as error:
            await abort_with(context, ORIGIN, public_error(error))

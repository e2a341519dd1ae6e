"""Maps RegionalDispatcherService RPCs to the Dispatcher domain object; no logic lives here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson
from opentelemetry import trace
from sluice.common.v1 import common_pb2
from sluice.dispatcher.v1 import dispatcher_service_pb2 as pb
from sluice.dispatcher.v1 import dispatcher_service_pb2_grpc as pb_grpc

from services.dispatcher import spans
from services.dispatcher.calls import Delta, DispatchResult, ModelRequest, ProviderAnswer
from services.dispatcher.dispatcher import Dispatcher
from shared.chat import FormatKind
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

ORIGIN = "dispatcher"
Context = grpc.aio.ServicerContext[object, object]


def model_request(context: common_pb2.RequestContext, call: common_pb2.ModelCall) -> ModelRequest:
    """Validates and converts a ModelCall; errors name the offending field."""
    if not call.model:
        raise InvalidRequest("call.model is required")
    if not call.messages:
        raise InvalidRequest("call.messages is empty; send at least one message")
    response_format = response_format_from_proto(call.response_format)
    if response_format.kind is FormatKind.JSON_SCHEMA:
        try:
            orjson.loads(response_format.json_schema)
        except orjson.JSONDecodeError:
            raise InvalidRequest("call.response_format.json_schema is not JSON") from None
    del context  # tenant is not needed to dispatch; it rides along for logs and spans
    return ModelRequest(
        model=call.model,
        turns=turns_from_proto(call.messages),
        sampling=sampling_from_proto(call.sampling),
        preferred_region=call.preferred_region,
        tier=call.tier,
        response_format=response_format,
        logprobs=call.logprobs,
        tools=tools_from_proto(call.tools),
        end_user=call.end_user,
    )


def completion_to_proto(result: DispatchResult) -> common_pb2.Completion:
    answer = result.answer
    return common_pb2.Completion(
        content=answer.content,
        finish_reason=finish_to_proto(answer.finish),
        model=answer.model,
        region=result.region,
        endpoint=result.endpoint,
        usage=usage_to_proto(answer.usage),
        cost_nano_usd=result.cost_nano_usd,
        upstream_latency=duration_from_seconds(result.latency_s),
        attempts=result.attempts,
        hedged=result.hedged,
        hedge_won=result.hedge_won,
        cancelled_cost_nano_usd=result.cancelled_cost_nano_usd,
        time_to_first_token=duration_from_seconds(result.ttft_s),
        choices=choices_to_proto(answer.choices),
        **_logprob_fields(answer),
    )


def _logprob_fields(answer: ProviderAnswer) -> dict[str, Any]:
    summary = answer.logprobs
    if summary is None:
        return {}
    return {
        "logprobs_present": True,
        "mean_token_logprob": summary.mean,
        "min_token_logprob": summary.min,
        "logprob_tokens": summary.tokens,
    }


def _annotate(result: DispatchResult) -> None:
    trace.get_current_span().set_attributes(spans.result_attributes(result))


class DispatcherServicer(pb_grpc.RegionalDispatcherServiceServicer):
    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    async def Dispatch(self, request: pb.DispatchRequest, context: Context) -> pb.DispatchResponse:
        try:
            call = model_request(request.context, request.call)
            result = await self._dispatcher.dispatch(call, caller_deadline(context))
        except SluiceError as error:
            await abort_with(context, ORIGIN, error)
        _annotate(result)
        return pb.DispatchResponse(completion=completion_to_proto(result))

    async def DispatchStream(
        self, request: pb.DispatchStreamRequest, context: Context
    ) -> AsyncIterator[pb.DispatchStreamResponse]:
        try:
            call = model_request(request.context, request.call)
            async for event in self._dispatcher.dispatch_stream(call, caller_deadline(context)):
                if isinstance(event, Delta) and event.piece is not None:
                    yield pb.DispatchStreamResponse(choice_delta=choice_delta_to_proto(event.piece))
                elif isinstance(event, Delta):
                    yield pb.DispatchStreamResponse(content_delta=event.text)
                else:
                    _annotate(event)
                    yield pb.DispatchStreamResponse(completion=completion_to_proto(event))
        except SluiceError as error:
            await abort_with(context, ORIGIN, error)

"""The dispatcher as the packer and servicer see it: proto calls in, ModelAnswers out.

Packing works on domain types (services/batcher/packer.py); this adapter decides which calls
may be packed, builds their PackKey, and turns a packed conversation back into a ModelCall for
the dispatcher. Errors from the dispatcher pass through as grpc.aio.AioRpcError, so the servicer
can relay their status unchanged.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from sluice.common.v1 import common_pb2
from sluice.dispatcher.v1 import dispatcher_service_pb2 as dispatcher_pb
from sluice.dispatcher.v1 import dispatcher_service_pb2_grpc as dispatcher_grpc

from services.batcher.packer import ModelAnswer, PackableCall, PackKey
from services.batcher.spans import PACKED_SIZE
from shared.chat import Turn
from shared.convert import (
    duration_from_seconds,
    finish_from_proto,
    finish_to_proto,
    turns_to_proto,
    usage_from_proto,
    usage_to_proto,
)


def answer_from_completion(completion: common_pb2.Completion) -> ModelAnswer:
    return ModelAnswer(
        content=completion.content,
        finish=finish_from_proto(completion.finish_reason),
        model=completion.model,
        region=completion.region,
        endpoint=completion.endpoint,
        usage=usage_from_proto(completion.usage),
        cost_nano_usd=completion.cost_nano_usd,
        latency_s=completion.upstream_latency.ToNanoseconds() / 1e9,
        attempts=completion.attempts,
    )


def completion_from_answer(answer: ModelAnswer) -> common_pb2.Completion:
    return common_pb2.Completion(
        content=answer.content,
        finish_reason=finish_to_proto(answer.finish),
        model=answer.model,
        region=answer.region,
        endpoint=answer.endpoint,
        usage=usage_to_proto(answer.usage),
        cost_nano_usd=answer.cost_nano_usd,
        upstream_latency=duration_from_seconds(answer.latency_s),
        attempts=answer.attempts,
    )


def pack_key(context: common_pb2.RequestContext, call: common_pb2.ModelCall) -> PackKey:
    """Everything but the user turn and max_tokens must match for calls to share a pack."""
    template = common_pb2.ModelCall()
    template.CopyFrom(call)
    del template.messages[:]
    template.sampling.max_tokens = 0
    return PackKey(
        tenant=context.tenant_id,
        model=call.model,
        system=call.messages[0].content,
        template=template.SerializeToString(deterministic=True),
    )


def packable_shape(
    call: common_pb2.ModelCall, count_tokens: Callable[[str], int], min_system_tokens: int
) -> bool:
    """One system turn then one user turn of plain text, free text back, no stop sequences
    (they would cut the JSON reply), one choice, no tools and no logprobs asked for (a packed
    reply cannot carry them per member), and a system prompt long enough that sending it once
    saves something."""
    roles = [m.role for m in call.messages]
    return (
        roles == [common_pb2.ROLE_SYSTEM, common_pb2.ROLE_USER]
        and not call.messages[0].name
        and not call.messages[1].name
        and not any(m.parts for m in call.messages)
        and not call.tools.functions
        and call.sampling.n <= 1
        and not call.sampling.logprobs
        and not call.logprobs
        and call.response_format.type
        in (common_pb2.RESPONSE_FORMAT_TYPE_UNSPECIFIED, common_pb2.RESPONSE_FORMAT_TYPE_TEXT)
        and not call.sampling.stop
        and count_tokens(call.messages[0].content) >= min_system_tokens
    )


class DispatcherUpstream:
    """Calls the dispatcher, alone or packed."""

    def __init__(
        self, stub: dispatcher_grpc.RegionalDispatcherServiceAsyncStub, tracer: trace.Tracer
    ) -> None:
        self._stub = stub
        self._tracer = tracer

    async def dispatch(
        self,
        context: common_pb2.RequestContext,
        call: common_pb2.ModelCall,
        timeout_s: float | None,
    ) -> common_pb2.Completion:
        request = dispatcher_pb.DispatchRequest(context=context, call=call)
        return (await self._stub.Dispatch(request, timeout=timeout_s)).completion

    def packable(
        self, context: common_pb2.RequestContext, call: common_pb2.ModelCall, deadline: float
    ) -> PackableCall:
        """The call as the packer takes it; deadline is in event-loop time (math.inf: none)."""

        caller = otel_context.get_current()

        async def alone() -> ModelAnswer:
            # Whatever time the window and a failed packed call left of the caller's deadline.
            remaining = deadline - asyncio.get_running_loop().time()
            timeout_s = None if math.isinf(deadline) else max(remaining, 0.001)
            # The packer runs this in its own task: the call belongs to the caller's trace.
            token = otel_context.attach(caller)
            try:
                return answer_from_completion(await self.dispatch(context, call, timeout_s))
            finally:
                otel_context.detach(token)

        return PackableCall(
            key=pack_key(context, call),
            request=call.messages[1].content,
            max_tokens=call.sampling.max_tokens,
            deadline=deadline,
            alone=alone,
            trace=caller,
        )

    async def send_packed(
        self,
        key: PackKey,
        turns: tuple[Turn, ...],
        max_tokens: int,
        timeout_s: float,
        traces: Sequence[object],
    ) -> ModelAnswer:
        call = common_pb2.ModelCall.FromString(key.template)
        call.messages.extend(turns_to_proto(turns))
        call.sampling.max_tokens = max_tokens
        # The packed call is the batcher's own; its id ties it to no single caller.
        context = common_pb2.RequestContext(
            tenant_id=key.tenant, request_id=f"pack-{uuid.uuid4().hex}"
        )
        # One upstream call serves many traces: it gets a span of its own, in a trace of its
        # own, linked to every member's span (OpenTelemetry's pattern for batch work).
        links = [
            trace.Link(trace.get_current_span(member).get_span_context())
            for member in traces
            if isinstance(member, otel_context.Context)
        ]
        with self._tracer.start_as_current_span(
            "batcher.pack", context=otel_context.Context(), links=links
        ) as span:
            span.set_attribute(PACKED_SIZE, len(traces))
            completion = await self.dispatch(
                context, call, None if math.isinf(timeout_s) else timeout_s
            )
        return answer_from_completion(completion)

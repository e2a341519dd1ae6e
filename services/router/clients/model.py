"""The model calls of the cascade: through the batcher, or to the dispatcher without it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
from sluice.batcher.v1 import batcher_service_pb2 as batcher_pb
from sluice.common.v1 import common_pb2
from sluice.dispatcher.v1 import dispatcher_service_pb2 as dispatcher_pb
from sluice.dispatcher.v1 import dispatcher_service_pb2_grpc as dispatcher_grpc

from services.router.clients.batchers import BatcherReplicas, ask_in_turn, batcher_key
from services.router.clients.common import Clock, request_context, stage_timeout, unreachable
from services.router.gates import LogprobSummary
from services.router.model import ChatRequest, DispatcherDown, Outcome, TierAnswer
from services.router.policy import TierSpec
from shared.chat import Choice, ChoiceDelta, Turn
from shared.convert import (
    finish_from_proto,
    response_format_to_proto,
    sampling_to_proto,
    turns_to_proto,
    usage_from_proto,
)
from shared.convert_tools import choice_delta_from_proto, choices_from_proto, tools_to_proto
from shared.errors import from_status
from shared.streams import finish_call

# What a tier's stream yields: plain text of choice 0, any other piece, then the answer.
StreamEvent = str | ChoiceDelta | TierAnswer


def _tier_answer(
    completion: common_pb2.Completion,
    outcome: Outcome,
    detail: str,
    cost_nano_usd: int | None = None,
) -> TierAnswer:
    return TierAnswer(
        content=completion.content,
        finish=finish_from_proto(completion.finish_reason),
        model=completion.model,
        region=completion.region,
        usage=usage_from_proto(completion.usage),
        cost_nano_usd=completion.cost_nano_usd if cost_nano_usd is None else cost_nano_usd,
        latency_s=completion.upstream_latency.ToNanoseconds() / 1e9,
        batcher_outcome=outcome,
        batcher_detail=detail,
        logprobs=_logprobs(completion),
        choices=_choices(completion),
    )


def _choices(completion: common_pb2.Completion) -> tuple[Choice, ...]:
    """Every choice, or () when the answer is one choice of text alone (its content and
    finish already say all of it)."""
    choices = choices_from_proto(completion.choices)
    if len(choices) == 1:
        only = choices[0]
        if not (only.tool_calls or only.refusal or only.logprobs or only.stop_sequence):
            return ()
    return choices


def _logprobs(completion: common_pb2.Completion) -> LogprobSummary | None:
    if not completion.logprobs_present:
        return None
    return LogprobSummary(
        completion.mean_token_logprob, completion.min_token_logprob, completion.logprob_tokens
    )


def _one_plain_answer(call: common_pb2.ModelCall) -> bool:
    """A packed call shares one upstream answer of text among its members, so a call that wants
    logprobs (its own), tools, several choices or sends images cannot be packed."""
    sampling = call.sampling
    return not (
        call.logprobs
        or sampling.logprobs
        or sampling.n > 1
        or call.tools.functions
        or any(part.HasField("image_url") for m in call.messages for part in m.parts)
    )


class ModelClient:
    """Calls a tier's model through the batcher, or straight to the dispatcher without it."""

    def __init__(
        self,
        batchers: BatcherReplicas,
        dispatcher: dispatcher_grpc.RegionalDispatcherServiceAsyncStub,
        dispatcher_addr: str,
        clock: Clock = time.monotonic,
    ) -> None:
        self._batchers = batchers
        self._dispatcher = dispatcher
        self._dispatcher_addr = dispatcher_addr
        self._clock = clock

    @staticmethod
    def _model_call(
        request: ChatRequest, tier: TierSpec, turns: tuple[Turn, ...]
    ) -> common_pb2.ModelCall:
        sampling = sampling_to_proto(request.sampling)
        if not sampling.max_tokens:
            sampling.max_tokens = request.model_class.max_tokens
        return common_pb2.ModelCall(
            response_format=response_format_to_proto(request.response_format),
            model=tier.model,
            messages=turns_to_proto(turns),
            sampling=sampling,
            tier=tier.index,
            logprobs=tier.wants_logprobs,
            tools=tools_to_proto(request.tools),
            end_user=request.end_user,
        )

    def _dispatcher_error(self, error: grpc.aio.AioRpcError) -> Exception:
        if unreachable(error):
            return DispatcherDown(
                f"dispatcher unavailable at {self._dispatcher_addr}: {error.details()}"
            )
        return from_status(error)

    async def call(
        self, request: ChatRequest, tier: TierSpec, turns: tuple[Turn, ...], deadline: float
    ) -> TierAnswer:
        call = self._model_call(request, tier, turns)
        execute = batcher_pb.ExecuteRequest(
            context=request_context(request),
            call=call,
            packable=request.model_class.packable and _one_plain_answer(call),
        )
        # The replica the call hashes to, then the next in its ranking if that one is down.
        executed, down = await ask_in_turn(
            self._batchers.ranked(batcher_key(request, call))[:2],
            lambda batcher: batcher.Execute(
                execute, timeout=stage_timeout(deadline, None, self._clock)
            ),
        )
        if executed is not None:
            return self._batched(executed)
        skipped = f"batcher unreachable ({'; '.join(down)}); called the dispatcher directly"
        return await self._direct(request, call, deadline, skipped)

    @staticmethod
    def _batched(executed: batcher_pb.ExecuteResponse) -> TierAnswer:
        if executed.shared:
            # This caller joined an identical in-flight call: it pays nothing extra upstream.
            return _tier_answer(
                executed.completion,
                Outcome.USED,
                f"shared an identical in-flight call ({executed.group_size} callers)",
                cost_nano_usd=0,
            )
        if executed.packed_size > 1:
            return _tier_answer(
                executed.completion,
                Outcome.USED,
                f"packed with {executed.packed_size - 1} other calls into one upstream call "
                f"({executed.input_tokens_saved} input tokens saved)",
            )
        if executed.pack_fallback_reason:
            return _tier_answer(
                executed.completion,
                Outcome.PASSED,
                f"packing fell back to its own call: {executed.pack_fallback_reason}",
            )
        return _tier_answer(executed.completion, Outcome.PASSED, "no identical call in flight")

    async def _direct(
        self, request: ChatRequest, call: common_pb2.ModelCall, deadline: float, skipped: str
    ) -> TierAnswer:
        try:
            dispatched = await self._dispatcher.Dispatch(
                dispatcher_pb.DispatchRequest(context=request_context(request), call=call),
                timeout=stage_timeout(deadline, None, self._clock),
            )
        except grpc.aio.AioRpcError as error:
            raise self._dispatcher_error(error) from None
        return _tier_answer(dispatched.completion, Outcome.SKIPPED, skipped)

    async def stream(
        self, request: ChatRequest, tier: TierSpec, turns: tuple[Turn, ...], deadline: float
    ) -> AsyncIterator[StreamEvent]:
        call = self._model_call(request, tier, turns)
        stream = self._dispatcher.DispatchStream(
            dispatcher_pb.DispatchStreamRequest(context=request_context(request), call=call),
            timeout=stage_timeout(deadline, None, self._clock),
        )
        try:
            # Awaited apart from the messages (it comes with the first), so that a caller gone
            # before then leaves the tracing wrapper unstarted for `finish_call` to run.
            await stream.initial_metadata()
            async for event in stream:
                kind = event.WhichOneof("event")
                if kind == "completion":
                    yield _tier_answer(
                        event.completion,
                        Outcome.NOT_APPLICABLE,
                        "streaming calls go straight to the dispatcher",
                    )
                elif kind == "choice_delta":
                    yield choice_delta_from_proto(event.choice_delta)
                else:
                    yield event.content_delta
        except grpc.aio.AioRpcError as error:
            raise self._dispatcher_error(error) from None
        finally:
            await finish_call(stream)

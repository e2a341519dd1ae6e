"""gRPC adapters that implement the router's ports on the other services' stubs.

These translate between the domain and the contracts, apply per-stage timeouts within the
request deadline, and turn "the peer is unreachable" into StageUnavailable (optional stages) or
DispatcherDown, while statuses the peers sent on purpose keep their code and message.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import grpc
from sluice.batcher.v1 import batcher_service_pb2 as batcher_pb
from sluice.batcher.v1 import batcher_service_pb2_grpc as batcher_grpc
from sluice.cache.v1 import cache_service_pb2 as cache_pb
from sluice.cache.v1 import cache_service_pb2_grpc as cache_grpc
from sluice.common.v1 import common_pb2
from sluice.compressor.v1 import compressor_service_pb2 as compressor_pb
from sluice.compressor.v1 import compressor_service_pb2_grpc as compressor_grpc
from sluice.dispatcher.v1 import dispatcher_service_pb2 as dispatcher_pb
from sluice.dispatcher.v1 import dispatcher_service_pb2_grpc as dispatcher_grpc

from services.router.model import (
    CachedAnswer,
    ChatRequest,
    Compression,
    DispatcherDown,
    Outcome,
    StageName,
    StageUnavailable,
    TierAnswer,
)
from services.router.policy import TierSpec
from shared.chat import Turn
from shared.convert import (
    finish_from_proto,
    finish_to_proto,
    response_format_to_proto,
    sampling_to_proto,
    turns_from_proto,
    turns_to_proto,
    usage_from_proto,
    usage_to_proto,
)
from shared.errors import DeadlineExceeded, error_origin, from_status

Clock = Callable[[], float]


def _unreachable(error: grpc.aio.AioRpcError) -> bool:
    """True when the peer never answered (down, refusing connections), as opposed to a status
    it chose to send, which carries Sluice's origin metadata."""
    return error.code() == grpc.StatusCode.UNAVAILABLE and error_origin(error) is None


def _timeout(deadline: float, cap: float | None, clock: Clock) -> float:
    remaining = deadline - clock()
    if remaining <= 0:
        raise DeadlineExceeded("the request deadline expired")
    return remaining if cap is None else min(cap, remaining)


def request_context(request: ChatRequest) -> common_pb2.RequestContext:
    return common_pb2.RequestContext(
        tenant_id=request.tenant.tenant_id,
        request_id=request.request_id,
        max_cost_nano_usd=request.max_cost_nano_usd,
    )


class CacheClient:
    def __init__(
        self,
        stub: cache_grpc.SemanticCacheServiceAsyncStub,
        timeout_s: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self._stub = stub
        self._timeout_s = timeout_s
        self._clock = clock

    async def lookup(self, request: ChatRequest, deadline: float) -> CachedAnswer | None:
        lookup = cache_pb.LookupRequest(
            context=request_context(request),
            model_class=request.model_class.name,
            messages=turns_to_proto(request.turns),
            sampling=sampling_to_proto(request.sampling),
            allow_semantic=request.cache_mode.value == "enabled",
        )
        try:
            found = await self._stub.Lookup(
                lookup, timeout=_timeout(deadline, self._timeout_s, self._clock)
            )
        except grpc.aio.AioRpcError as error:
            # Any cache failure only costs the chance of a hit; never fail the request for it.
            raise StageUnavailable(
                StageName.CACHE, f"{error.code().name}: {error.details()}"
            ) from None
        if found.kind not in (cache_pb.HIT_KIND_EXACT, cache_pb.HIT_KIND_SEMANTIC):
            return None
        return CachedAnswer(
            kind="exact" if found.kind == cache_pb.HIT_KIND_EXACT else "semantic",
            content=found.content,
            model=found.model,
            usage=usage_from_proto(found.usage),
            similarity=found.similarity,
            finish=finish_from_proto(found.finish_reason),
        )

    async def store(self, request: ChatRequest, answer: TierAnswer, deadline: float) -> None:
        store = cache_pb.StoreRequest(
            context=request_context(request),
            model_class=request.model_class.name,
            messages=turns_to_proto(request.turns),
            sampling=sampling_to_proto(request.sampling),
            content=answer.content,
            model=answer.model,
            usage=usage_to_proto(answer.usage),
            finish_reason=finish_to_proto(answer.finish),
        )
        try:
            await self._stub.Store(store, timeout=_timeout(deadline, self._timeout_s, self._clock))
        except grpc.aio.AioRpcError as error:
            raise StageUnavailable(
                StageName.CACHE, f"{error.code().name}: {error.details()}"
            ) from None


class CompressorClient:
    def __init__(
        self,
        stub: compressor_grpc.PromptCompressorServiceAsyncStub,
        timeout_s: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self._stub = stub
        self._timeout_s = timeout_s
        self._clock = clock

    async def compress(
        self, request: ChatRequest, target_model: str, deadline: float
    ) -> Compression:
        compress = compressor_pb.CompressRequest(
            context=request_context(request),
            messages=turns_to_proto(request.turns),
            target_model=target_model,
        )
        try:
            result = await self._stub.Compress(
                compress, timeout=_timeout(deadline, self._timeout_s, self._clock)
            )
        except grpc.aio.AioRpcError as error:
            raise StageUnavailable(
                StageName.COMPRESSOR, f"{error.code().name}: {error.details()}"
            ) from None
        return Compression(
            turns=turns_from_proto(result.messages) if result.compressed else request.turns,
            compressed=result.compressed,
            original_tokens=result.original_tokens,
            compressed_tokens=result.compressed_tokens,
            strategy=result.strategy,
            reason=result.reason,
            cost_nano_usd=result.cost_nano_usd,
        )


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
    )


class ModelClient:
    """Calls a tier's model through the batcher, or straight to the dispatcher without it."""

    def __init__(
        self,
        batcher: batcher_grpc.BatcherServiceAsyncStub,
        dispatcher: dispatcher_grpc.RegionalDispatcherServiceAsyncStub,
        dispatcher_addr: str,
        clock: Clock = time.monotonic,
    ) -> None:
        self._batcher = batcher
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
        )

    def _dispatcher_error(self, error: grpc.aio.AioRpcError) -> Exception:
        if _unreachable(error):
            return DispatcherDown(
                f"dispatcher unavailable at {self._dispatcher_addr}: {error.details()}"
            )
        return from_status(error)

    async def call(
        self, request: ChatRequest, tier: TierSpec, turns: tuple[Turn, ...], deadline: float
    ) -> TierAnswer:
        call = self._model_call(request, tier, turns)
        timeout = _timeout(deadline, None, self._clock)
        try:
            executed = await self._batcher.Execute(
                batcher_pb.ExecuteRequest(context=request_context(request), call=call),
                timeout=timeout,
            )
        except grpc.aio.AioRpcError as error:
            if not _unreachable(error):
                raise from_status(error) from None
            skipped = f"batcher unreachable ({error.details()}); called the dispatcher directly"
            return await self._direct(request, call, deadline, skipped)
        if executed.shared:
            # This caller joined an identical in-flight call: it pays nothing extra upstream.
            return _tier_answer(
                executed.completion,
                Outcome.USED,
                f"shared an identical in-flight call ({executed.group_size} callers)",
                cost_nano_usd=0,
            )
        return _tier_answer(executed.completion, Outcome.PASSED, "no identical call in flight")

    async def _direct(
        self, request: ChatRequest, call: common_pb2.ModelCall, deadline: float, skipped: str
    ) -> TierAnswer:
        try:
            dispatched = await self._dispatcher.Dispatch(
                dispatcher_pb.DispatchRequest(context=request_context(request), call=call),
                timeout=_timeout(deadline, None, self._clock),
            )
        except grpc.aio.AioRpcError as error:
            raise self._dispatcher_error(error) from None
        return _tier_answer(dispatched.completion, Outcome.SKIPPED, skipped)

    async def stream(
        self, request: ChatRequest, tier: TierSpec, turns: tuple[Turn, ...], deadline: float
    ) -> AsyncIterator[str | TierAnswer]:
        call = self._model_call(request, tier, turns)
        stream = self._dispatcher.DispatchStream(
            dispatcher_pb.DispatchStreamRequest(context=request_context(request), call=call),
            timeout=_timeout(deadline, None, self._clock),
        )
        try:
            async for event in stream:
                if event.HasField("completion"):
                    yield _tier_answer(
                        event.completion,
                        Outcome.NOT_APPLICABLE,
                        "streaming calls go straight to the dispatcher",
                    )
                else:
                    yield event.content_delta
        except grpc.aio.AioRpcError as error:
            raise self._dispatcher_error(error) from None

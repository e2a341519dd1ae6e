"""Maps SemanticCacheService's RPCs onto SemanticCache; proto <-> domain and status codes only."""

from __future__ import annotations

import grpc
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from opentelemetry import trace
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc
from sluice.common.v1 import common_pb2

from services.cache.cache import CachedAnswer, CacheRequest, HitKind, LookupResult, SemanticCache
from shared import telemetry as attrs
from shared.convert import (
    finish_from_proto,
    finish_to_proto,
    sampling_from_proto,
    turns_from_proto,
    usage_from_proto,
    usage_to_proto,
)
from shared.errors import SluiceError, abort_with

ORIGIN = "cache"
Context = grpc.aio.ServicerContext[object, object]

_KIND_TO_PROTO = {
    HitKind.MISS: pb.HIT_KIND_MISS,
    HitKind.EXACT: pb.HIT_KIND_EXACT,
    HitKind.SEMANTIC: pb.HIT_KIND_SEMANTIC,
}


class SemanticCacheServicer(pb_grpc.SemanticCacheServiceServicer):
    def __init__(self, cache: SemanticCache) -> None:
        self._cache = cache

    async def Lookup(self, request: pb.LookupRequest, context: Context) -> pb.LookupResponse:
        span = trace.get_current_span()
        # Lookups run on local CPU only; no provider is billed for them.
        span.set_attributes({attrs.STAGE: ORIGIN, attrs.COST_USD: 0.0})
        try:
            cache_request = _cache_request(
                request.context,
                request.model_class,
                request.messages,
                request.sampling,
                allow_semantic=request.allow_semantic,
            )
            result = await self._cache.lookup(cache_request)
        except SluiceError as error:
            await abort_with(context, ORIGIN, error)
        span.set_attributes(
            {
                attrs.CACHE_HIT: result.hit,
                attrs.CACHE_HIT_KIND: result.kind.value,
                attrs.CACHE_SIMILARITY: result.similarity,
            }
        )
        return _lookup_response(result)

    async def Store(self, request: pb.StoreRequest, context: Context) -> pb.StoreResponse:
        trace.get_current_span().set_attributes({attrs.STAGE: ORIGIN, attrs.COST_USD: 0.0})
        try:
            cache_request = _cache_request(
                request.context, request.model_class, request.messages, request.sampling
            )
            answer = CachedAnswer(
                content=request.content,
                model=request.model,
                usage=usage_from_proto(request.usage),
                finish=finish_from_proto(request.finish_reason),
            )
            ttl_s = request.ttl.ToNanoseconds() / 1e9 if request.HasField("ttl") else None
            entry_id = await self._cache.store(cache_request, answer, ttl_s=ttl_s)
        except SluiceError as error:
            await abort_with(context, ORIGIN, error)
        return pb.StoreResponse(entry_id=entry_id)


def _cache_request(
    context: common_pb2.RequestContext,
    model_class: str,
    messages: RepeatedCompositeFieldContainer[common_pb2.ChatMessage],
    sampling: common_pb2.SamplingParams,
    *,
    allow_semantic: bool = True,
) -> CacheRequest:
    """Converts the fields both RPCs share; SemanticCache checks the required ones."""
    return CacheRequest(
        tenant_id=context.tenant_id,
        model_class=model_class,
        turns=turns_from_proto(messages),
        sampling=sampling_from_proto(sampling),
        allow_semantic=allow_semantic,
    )


def _lookup_response(result: LookupResult) -> pb.LookupResponse:
    response = pb.LookupResponse(
        kind=_KIND_TO_PROTO[result.kind], similarity=result.similarity, entry_id=result.entry_id
    )
    if result.answer is not None:
        response.content = result.answer.content
        response.model = result.answer.model
        response.usage.CopyFrom(usage_to_proto(result.answer.usage))
        response.finish_reason = finish_to_proto(result.answer.finish)
    return response

"""Maps SemanticCacheService's RPCs onto SemanticCache; proto <-> domain and status codes only."""

from __future__ import annotations

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from opentelemetry import trace
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc
from sluice.common.v1 import common_pb2

from services.cache.cache import SemanticCache
from services.cache.model import (
    CacheRequest,
    ExactTarget,
    HitKind,
    InvalidateTarget,
    LookupResult,
    NamespaceTarget,
    TagTarget,
    TenantTarget,
)
from services.cache.records import CachedAnswer
from services.cache.stats import CacheStats
from shared import telemetry as attrs
from shared.chat import NO_TOOLS
from shared.convert import (
    finish_from_proto,
    finish_to_proto,
    response_format_from_proto,
    sampling_from_proto,
    turns_from_proto,
    usage_from_proto,
    usage_to_proto,
)
from shared.convert_tools import choices_from_proto, choices_to_proto, tools_from_proto
from shared.errors import InvalidRequest, SluiceError, abort_with

ORIGIN = "cache"
# On the ReportHit span: whether the verdict is a shadow check's (a miss's rejected candidate).
REPORT_SHADOW = "sluice.cache.report.shadow"
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
                request.response_format,
                tools=request.tools,
                allow_semantic=request.allow_semantic,
                max_age_s=_seconds(request.max_age) if request.HasField("max_age") else None,
                # 0 is proto3's unset: no bound. Rounded: a float32 0.01 is 0.00999999977.
                max_wrong_rate=round(request.max_wrong_rate, 7) or None,
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
        response = _lookup_response(result)
        if result.hit:
            response.expires_in.CopyFrom(_duration(self._cache.expires_in(result.entry_id)))
        return response

    async def Store(self, request: pb.StoreRequest, context: Context) -> pb.StoreResponse:
        trace.get_current_span().set_attributes({attrs.STAGE: ORIGIN, attrs.COST_USD: 0.0})
        try:
            cache_request = _cache_request(
                request.context,
                request.model_class,
                request.messages,
                request.sampling,
                request.response_format,
                tools=request.tools,
            )
            answer = CachedAnswer(
                content=request.content,
                model=request.model,
                usage=usage_from_proto(request.usage),
                finish=finish_from_proto(request.finish_reason),
                choices=choices_from_proto(request.choices),
            )
            stored = await self._cache.store(
                cache_request,
                answer,
                ttl_s=_seconds(request.ttl) if request.HasField("ttl") else None,
                tags=list(request.tags),
            )
        except SluiceError as error:
            await abort_with(context, ORIGIN, error)
        return pb.StoreResponse(
            entry_id=stored.entry_id,
            namespace_key=stored.namespace,
            expires_in=_duration(self._cache.expires_in(stored.entry_id)),
        )

    async def Invalidate(  # noqa: N802 - named by the proto
        self, request: pb.InvalidateRequest, context: Context
    ) -> pb.InvalidateResponse:
        trace.get_current_span().set_attributes({attrs.STAGE: ORIGIN, attrs.COST_USD: 0.0})
        try:
            removed = await self._cache.invalidate(request.context.tenant_id, _target(request))
        except SluiceError as error:
            await abort_with(context, ORIGIN, error)
        return pb.InvalidateResponse(removed=removed)

    async def ReportHit(  # noqa: N802 - named by the proto
        self, request: pb.ReportHitRequest, context: Context
    ) -> pb.ReportHitResponse:
        trace.get_current_span().set_attributes(
            {attrs.STAGE: ORIGIN, attrs.COST_USD: 0.0, REPORT_SHADOW: request.shadow}
        )
        try:
            if request.verdict not in (pb.HIT_VERDICT_WRONG, pb.HIT_VERDICT_RIGHT):
                raise InvalidRequest("verdict is required: HIT_VERDICT_WRONG or HIT_VERDICT_RIGHT")
            served = _cache_request(
                request.context,
                request.model_class,
                request.messages,
                request.sampling,
                request.response_format,
            )
            correct = request.verdict == pb.HIT_VERDICT_RIGHT
            report = await self._cache.report_hit(
                served, request.entry_id, correct, shadow=request.shadow
            )
        except SluiceError as error:
            await abort_with(context, ORIGIN, error)
        return pb.ReportHitResponse(
            namespace_key=report.namespace,
            removed=report.removed,
            calibrated=report.calibrated,
            threshold=report.threshold,
        )

    async def Changes(  # noqa: N802 - named by the proto
        self, request: pb.ChangesRequest, context: Context
    ) -> pb.ChangesResponse:
        # A long poll: no span attributes of a stage, and nothing billed.
        self._cache.served_elsewhere(request.served_entry_ids)
        found = await self._cache.changes.wait(request.epoch, request.after, _seconds(request.wait))
        return pb.ChangesResponse(
            epoch=found.epoch, last=found.last, reset=found.reset, removed_entry_ids=found.removed
        )

    async def Stats(  # noqa: N802 - named by the proto
        self, request: pb.StatsRequest, context: Context
    ) -> pb.StatsResponse:
        try:
            stats = self._cache.stats(request.context.tenant_id or None)
        except SluiceError as error:
            await abort_with(context, ORIGIN, error)
        return _stats_response(stats)


def _seconds(duration: Duration) -> float:
    return duration.ToNanoseconds() / 1e9


def _duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(int(seconds * 1e9))
    return duration


def _cache_request(
    context: common_pb2.RequestContext,
    model_class: str,
    messages: RepeatedCompositeFieldContainer[common_pb2.ChatMessage],
    sampling: common_pb2.SamplingParams,
    response_format: common_pb2.ResponseFormat,
    *,
    tools: common_pb2.ToolSet | None = None,
    allow_semantic: bool = True,
    max_age_s: float | None = None,
    max_wrong_rate: float | None = None,
) -> CacheRequest:
    """Converts the fields every RPC shares; SemanticCache checks the required ones."""
    return CacheRequest(
        tenant_id=context.tenant_id,
        model_class=model_class,
        turns=turns_from_proto(messages),
        sampling=sampling_from_proto(sampling),
        allow_semantic=allow_semantic,
        response_format=response_format_from_proto(response_format),
        max_age_s=max_age_s,
        tools=NO_TOOLS if tools is None else tools_from_proto(tools),
        max_wrong_rate=max_wrong_rate,
    )


def _target(request: pb.InvalidateRequest) -> InvalidateTarget:
    which = request.WhichOneof("target")
    if which == "exact":
        exact = request.exact
        return ExactTarget(
            _cache_request(
                request.context,
                exact.model_class,
                exact.messages,
                exact.sampling,
                exact.response_format,
                tools=exact.tools,
            )
        )
    if which == "namespace_key":
        return NamespaceTarget(request.namespace_key)
    if which == "tenant_wide":
        if not request.tenant_wide:
            raise InvalidRequest("tenant_wide must be true when it is the target")
        return TenantTarget()
    if which == "tag":
        return TagTarget(request.tag)
    raise InvalidRequest("one of exact, namespace_key, tenant_wide or tag must be set")


def _lookup_response(result: LookupResult) -> pb.LookupResponse:
    response = pb.LookupResponse(
        kind=_KIND_TO_PROTO[result.kind],
        similarity=result.similarity,
        entry_id=result.entry_id,
        namespace_key=result.namespace,
        rejected=result.rejected,
    )
    nearest = result.nearest_rejected
    if nearest is not None:
        response.nearest_rejected.CopyFrom(
            pb.RejectedCandidate(
                entry_id=nearest.entry_id, content=nearest.content, similarity=nearest.similarity
            )
        )
    if result.answer is not None:
        response.content = result.answer.content
        response.model = result.answer.model
        response.usage.CopyFrom(usage_to_proto(result.answer.usage))
        response.finish_reason = finish_to_proto(result.answer.finish)
        response.choices.extend(choices_to_proto(result.answer.choices))
    return response


def _stats_response(stats: CacheStats) -> pb.StatsResponse:
    counters = stats.counters
    return pb.StatsResponse(
        tenant_id=stats.tenant_id or "",
        exact_hits=counters.exact_hits,
        semantic_hits=counters.semantic_hits,
        misses=counters.misses,
        verification_rejects=counters.verification_rejects,
        entries=stats.entries,
        bytes=stats.nbytes,
        evictions=counters.evictions,
        expirations=counters.expirations,
        invalidations=counters.invalidations,
        skipped_bad_vectors=counters.skipped_bad_vectors,
        verification_failures=counters.verification_failures,
        shadow_reports=counters.shadow_reports,
        shadow_agreements=counters.shadow_agreements,
    )

"""The cache service behind the router's CachePort."""

from __future__ import annotations

import time

import grpc
from google.protobuf.duration_pb2 import Duration
from sluice.cache.v1 import cache_service_pb2 as cache_pb
from sluice.cache.v1 import cache_service_pb2_grpc as cache_grpc

from services.router.audit_compare import HitVerdict
from services.router.clients.common import Clock, request_context, stage_down, stage_timeout
from services.router.exact_feed import ChangeBatch
from services.router.model import (
    CachedAnswer,
    CacheLookup,
    ChatRequest,
    RejectedCandidate,
    StageName,
    StoredEntry,
    TierAnswer,
)
from shared.convert import (
    finish_from_proto,
    finish_to_proto,
    response_format_to_proto,
    sampling_to_proto,
    turns_to_proto,
    usage_from_proto,
    usage_to_proto,
)
from shared.convert_tools import choices_from_proto, choices_to_proto, tools_to_proto


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

    async def lookup(self, request: ChatRequest, deadline: float) -> CacheLookup:
        lookup = cache_pb.LookupRequest(
            context=request_context(request),
            model_class=request.model_class.name,
            messages=turns_to_proto(request.turns),
            sampling=sampling_to_proto(request.sampling),
            allow_semantic=request.cache_mode.value == "enabled",
            # Part of the keys: a JSON request must never get a free-text answer, nor the reverse.
            response_format=response_format_to_proto(request.response_format),
            # Part of the keys too: a tool call is only right for the tools it was made with.
            tools=tools_to_proto(request.tools),
            # The tenant's error bound on semantic hits; 0 leaves it to the verifier's bar.
            max_wrong_rate=request.tenant.cache_max_wrong_rate or 0.0,
        )
        try:
            found = await self._stub.Lookup(
                lookup, timeout=stage_timeout(deadline, self._timeout_s, self._clock)
            )
        except grpc.aio.AioRpcError as error:
            # Any cache failure only costs the chance of a hit; never fail the request for it.
            raise stage_down(StageName.CACHE, error) from None
        if found.kind not in (cache_pb.HIT_KIND_EXACT, cache_pb.HIT_KIND_SEMANTIC):
            if not found.HasField("nearest_rejected"):
                return CacheLookup()
            rejected = found.nearest_rejected
            return CacheLookup(
                nearest_rejected=RejectedCandidate(
                    rejected.entry_id, rejected.content, rejected.similarity
                )
            )
        hit = CachedAnswer(
            kind="exact" if found.kind == cache_pb.HIT_KIND_EXACT else "semantic",
            content=found.content,
            model=found.model,
            usage=usage_from_proto(found.usage),
            similarity=found.similarity,
            finish=finish_from_proto(found.finish_reason),
            entry_id=found.entry_id,
            choices=choices_from_proto(found.choices),
            expires_in_s=found.expires_in.ToNanoseconds() / 1e9,
        )
        return CacheLookup(hit)

    async def store(
        self, request: ChatRequest, answer: TierAnswer, deadline: float
    ) -> StoredEntry | None:
        store = cache_pb.StoreRequest(
            context=request_context(request),
            model_class=request.model_class.name,
            messages=turns_to_proto(request.turns),
            sampling=sampling_to_proto(request.sampling),
            content=answer.content,
            model=answer.model,
            usage=usage_to_proto(answer.usage),
            finish_reason=finish_to_proto(answer.finish),
            response_format=response_format_to_proto(request.response_format),
            tools=tools_to_proto(request.tools),
            choices=choices_to_proto(answer.choices),
        )
        try:
            stored = await self._stub.Store(
                store, timeout=stage_timeout(deadline, self._timeout_s, self._clock)
            )
        except grpc.aio.AioRpcError as error:
            raise stage_down(StageName.CACHE, error) from None
        # Read back from the message sent, as the cache reads it, so that a copy kept from it
        # is the very answer a Lookup would bring back.
        kept = CachedAnswer(
            kind="exact",
            content=store.content,
            model=store.model,
            usage=usage_from_proto(store.usage),
            similarity=1.0,
            finish=finish_from_proto(store.finish_reason),
            entry_id=stored.entry_id,
            choices=choices_from_proto(store.choices),
        )
        return StoredEntry(stored.entry_id, stored.expires_in.ToNanoseconds() / 1e9, kept)

    async def changes(
        self, epoch: str, after: int, served: list[str], wait_s: float
    ) -> ChangeBatch:
        """One long poll of the cache's change feed (exact_feed.py)."""
        wait = Duration()
        wait.FromNanoseconds(int(wait_s * 1e9))
        poll = cache_pb.ChangesRequest(epoch=epoch, after=after, wait=wait, served_entry_ids=served)
        try:
            # The poll's own wait, plus the usual cache timeout for the answer to arrive.
            found = await self._stub.Changes(poll, timeout=wait_s + self._timeout_s)
        except grpc.aio.AioRpcError as error:
            raise stage_down(StageName.CACHE, error) from None
        return ChangeBatch(found.epoch, found.last, found.reset, tuple(found.removed_entry_ids))

    async def report_hit(
        self,
        request: ChatRequest,
        entry_id: str,
        verdict: HitVerdict,
        deadline: float,
        *,
        shadow: bool = False,
    ) -> None:
        report = cache_pb.ReportHitRequest(
            # The same request fields its Lookup sent: the cache finds the namespace by them.
            context=request_context(request),
            model_class=request.model_class.name,
            messages=turns_to_proto(request.turns),
            sampling=sampling_to_proto(request.sampling),
            response_format=response_format_to_proto(request.response_format),
            entry_id=entry_id,
            verdict=_VERDICTS[verdict],
            shadow=shadow,
        )
        try:
            await self._stub.ReportHit(
                report, timeout=stage_timeout(deadline, self._timeout_s, self._clock)
            )
        except grpc.aio.AioRpcError as error:
            raise stage_down(StageName.CACHE, error) from None


_VERDICTS = {
    HitVerdict.RIGHT: cache_pb.HIT_VERDICT_RIGHT,
    HitVerdict.WRONG: cache_pb.HIT_VERDICT_WRONG,
}

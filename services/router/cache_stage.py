"""The cache's part of a request: one owner, called once before the cascade and once after.

Before, it waits for related stores still running, looks the request up, re-checks a hit's answer
against the first tier's rule gates (a semantic hit that fails is reported wrong and served as a
miss) and returns the cache's line of the cost table. After, once the request has its answer,
it samples a served semantic hit for an audit, or stores a fresh answer and checks it against the
cache's nearest rejected candidate (a shadow check). Reports, audits and stores run in the
background (cache_audit.py, stores.py), so none of them holds up the caller.

A cache that cannot be reached is skipped: its line says SKIPPED and why, and the request goes
on without it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from services.router.cache_audit import CacheAudit, recheck
from services.router.model import (
    CachedAnswer,
    CacheLookup,
    CacheMode,
    ChatRequest,
    Outcome,
    StageLine,
    StageName,
    StageUnavailable,
    TierAnswer,
)
from services.router.ports import CachePort
from services.router.stores import BackgroundStores, content_words, store_key
from shared.chat import Choice, Finish

LOG = logging.getLogger(__name__)
# A Store is given this long, from when it starts, whatever deadline its request had: the caller
# already has its answer, and a tight caller deadline should not cost the next caller a hit.
STORE_DEADLINE_S = 30.0
# An answer that ended by itself: its text is done, or it handed over to the caller's tools.
_COMPLETE = frozenset({Finish.STOP, Finish.TOOL_CALLS})


class CacheStage:
    """Lookup, gate re-check, hit reports, audits, shadow checks and stores of one request."""

    def __init__(
        self,
        cache: CachePort,
        audit: CacheAudit,
        stores: BackgroundStores | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache = cache
        self.audit = audit
        self.stores = stores or BackgroundStores()
        self._clock = clock

    async def before(self, request: ChatRequest, deadline: float) -> tuple[CacheLookup, StageLine]:
        """The lookup's result (a hit only if it may be served) and the cache's line."""
        if request.cache_mode is CacheMode.BYPASS:
            line = StageLine(StageName.CACHE, Outcome.NOT_APPLICABLE, "bypassed by request")
            return CacheLookup(), line
        if not cacheable(request):
            return CacheLookup(), StageLine(
                StageName.CACHE,
                Outcome.NOT_APPLICABLE,
                "temperature > 0 and the tenant's policy does not cache sampled answers",
            )
        started = self._clock()
        await self.stores.settled(store_key(request), content_words(request))
        try:
            found = await self._cache.lookup(request, deadline)
        except StageUnavailable as error:
            LOG.warning("cache skipped: %s", error.reason)
            return CacheLookup(), StageLine(StageName.CACHE, Outcome.SKIPPED, error.reason)
        elapsed = self._clock() - started
        if found.hit is None:
            return found, StageLine(StageName.CACHE, Outcome.PASSED, "miss", latency_s=elapsed)
        return self._checked(request, found, found.hit, elapsed)

    def _checked(
        self, request: ChatRequest, found: CacheLookup, hit: CachedAnswer, elapsed: float
    ) -> tuple[CacheLookup, StageLine]:
        detail = f"{hit.kind} hit" + (
            f" (similarity {hit.similarity:.3f})" if hit.kind == "semantic" else ""
        )
        failed = recheck(request, hit)
        if failed.passed:
            line = StageLine(
                StageName.CACHE, Outcome.USED, detail, model=hit.model, latency_s=elapsed
            )
            return found, line
        if hit.kind == "semantic":
            # The match served an answer this request's gates turn down: the cache learns
            # that the match was wrong.
            self.audit.report_wrong(request, hit)
        # An exact hit failing a gate is not reported: the request is the very one the
        # answer was stored for, so the policy changed since, not the matching.
        return CacheLookup(), StageLine(
            StageName.CACHE,
            Outcome.REJECTED,
            f"{detail} failed gate {failed.gate}: {failed.reason}; treated as a miss",
            model=hit.model,
            latency_s=elapsed,
        )

    def after(self, request: ChatRequest, found: CacheLookup, fresh: TierAnswer | None) -> None:
        """Once the request has its answer: `found` is what `before` returned, `fresh` the
        cascade's answer, None when the cache's hit was served. Called before the result is
        yielded, since a unary caller stops reading there."""
        if found.hit is not None:
            # A sampled semantic hit is checked in the background.
            self.audit.consider(request, found.hit)
            return
        if fresh is None:
            return
        self._store(request, fresh)
        if found.nearest_rejected is not None and fresh.finish is Finish.STOP:
            # Free evidence for the cache's threshold: would the rejected answer have done?
            self.audit.shadow(request, found.nearest_rejected, fresh)

    def _store(self, request: ChatRequest, answer: TierAnswer) -> None:
        # Only complete answers are worth serving again (every choice of them): a truncated
        # one would fail its gate next time too.
        if (
            request.cache_mode is CacheMode.BYPASS
            or not cacheable(request)
            or not all(choice.finish in _COMPLETE for choice in _all_choices(answer))
        ):
            return

        def store() -> Awaitable[None]:
            return self._cache.store(request, answer, self._clock() + STORE_DEADLINE_S)

        self.stores.submit(store, store_key(request), content_words(request))

    async def drain(self, timeout_s: float | None = None) -> None:
        """Waits for the cache stores, then the audits and hit reports, still running; called
        when the router shuts down."""
        started = time.monotonic()
        await self.stores.drain(timeout_s)
        left = None if timeout_s is None else max(0.0, timeout_s - (time.monotonic() - started))
        await self.audit.drain(left)


def _all_choices(answer: TierAnswer) -> tuple[Choice, ...]:
    return answer.choices or (Choice(0, answer.content, answer.finish),)


def cacheable(request: ChatRequest) -> bool:
    """Sampled requests are cached only where the tenant's policy allows it."""
    temperature = request.sampling.temperature or 0.0
    return temperature == 0 or request.tenant.cache_sampled

"""The cache's part of a request: one owner, called once before the cascade and once after.

Before, it waits for related stores still running, looks the request up, re-checks a hit's answer
against the first tier's rule gates (a semantic hit that fails is reported wrong and served as a
miss) and returns the cache's line of the cost table. After, once the request has its answer,
it samples a served semantic hit for an audit, or stores a fresh answer and checks it against the
cache's nearest rejected candidate (a shadow check). Reports, audits and stores run in the
background (cache_audit.py, stores.py), so none of them holds up the caller.

Exact hits are answered from the router's own copies when it holds one (exact_local.py): the
lookup asks them first, and keeps a copy of every exact hit the cache serves and every answer it
stores for this router that passes the first tier's rule gates, which a copy then need not pass
again (copy_line). The semantic path always goes to the cache.

A cache that cannot be reached is skipped: its line says SKIPPED and why, and the request goes
on without it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from services.router.cache_audit import CacheAudit, recheck
from services.router.exact_feed import FeedFollower
from services.router.exact_local import ExactCopies, LocalCopy
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
        copies: ExactCopies | None = None,
        feed: FeedFollower | None = None,
    ) -> None:
        self._cache = cache
        self.audit = audit
        self.stores = stores or BackgroundStores()
        self._clock = clock
        # The router's own exact copies, kept right by `feed`; None: every lookup crosses to
        # the cache.
        self.copies = copies
        self._feed = feed

    def start(self) -> None:
        """Starts following the cache's change feed; copies are served only once it answers."""
        if self._feed is not None:
            self._feed.start()

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
        copy = self.copies.find(request) if self.copies is not None else None
        if copy is not None:
            return CacheLookup(copy.answer), self.copy_line(copy, started)
        await self.stores.settled(store_key(request), content_words(request))
        ticket = None if self.copies is None else self.copies.ticket()
        try:
            found = await self._cache.lookup(request, deadline)
        except StageUnavailable as error:
            LOG.warning("cache skipped: %s", error.reason)
            return CacheLookup(), StageLine(StageName.CACHE, Outcome.SKIPPED, error.reason)
        elapsed = self._clock() - started
        if found.hit is None:
            return found, StageLine(StageName.CACHE, Outcome.PASSED, "miss", latency_s=elapsed)
        served, line = self._checked(request, found, found.hit, started)
        if served.hit is not None and served.hit.kind == "exact" and self.copies is not None:
            self.copies.admit(ticket, request, served.hit, served.hit.expires_in_s)
        return served, line

    def local(self, request: ChatRequest, key: str = "") -> LocalCopy | None:
        """The router's own copy of this request's answer (`key`: its copy_key, when known),
        where the request may be answered from the cache at all; before admission has
        validated it (see Admission.draft)."""
        if self.copies is None or request.cache_mode is CacheMode.BYPASS:
            return None
        return self.copies.find(request, key) if cacheable(request) else None

    def copy_line(self, copy: LocalCopy, started: float) -> StageLine:
        """The cache's line for a request answered from the router's copy. A copy is only kept
        of an answer that passed the first tier's rule gates for the request it was kept for;
        its key covers everything those gates read, so it passes them for every request it
        serves, and is not checked again."""
        answer, elapsed = copy.answer, self._clock() - started
        detail = "exact hit (router copy)"
        return StageLine(
            StageName.CACHE, Outcome.USED, detail, model=answer.model, latency_s=elapsed
        )

    def _checked(
        self, request: ChatRequest, found: CacheLookup, hit: CachedAnswer, started: float
    ) -> tuple[CacheLookup, StageLine]:
        """The cache's hit through the request's first-tier rule gates: the lookup to serve and
        the cache's line, or a miss whose line says which gate failed."""
        elapsed = self._clock() - started
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

        async def store() -> None:
            ticket = None if self.copies is None else self.copies.ticket()
            stored = await self._cache.store(request, answer, self._clock() + STORE_DEADLINE_S)
            # Only an answer a repeat could be served (copy_line says why it is checked once).
            if (
                stored is not None
                and self.copies is not None
                and recheck(request, stored.answer).passed
            ):
                self.copies.admit(ticket, request, stored.answer, stored.expires_in_s)

        self.stores.submit(store, store_key(request), content_words(request))

    async def drain(self, timeout_s: float | None = None) -> None:
        """Waits for the cache stores, then the audits and hit reports, still running; called
        when the router shuts down."""
        started = time.monotonic()
        if self._feed is not None:
            await self._feed.aclose()
        await self.stores.drain(timeout_s)
        left = None if timeout_s is None else max(0.0, timeout_s - (time.monotonic() - started))
        await self.audit.drain(left)


def _all_choices(answer: TierAnswer) -> tuple[Choice, ...]:
    return answer.choices or (Choice(0, answer.content, answer.finish),)


def cacheable(request: ChatRequest) -> bool:
    """Sampled requests are cached only where the tenant's policy allows it."""
    temperature = request.sampling.temperature or 0.0
    return temperature == 0 or request.tenant.cache_sampled

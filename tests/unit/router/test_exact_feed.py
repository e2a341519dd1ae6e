"""The feed follower and the cache stage's use of the exact copies: a removal or reset from the
feed drops copies, a failed poll turns them off, served ids go back to the cache, an exact hit
or a store is kept and served without a hop, a semantic hit never is."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from services.router.cache_audit import AuditSampler, CacheAudit
from services.router.cache_stage import CacheStage
from services.router.cascade import Cascade
from services.router.exact_feed import ChangeBatch, FeedFollower
from services.router.exact_local import ExactCopies
from services.router.model import (
    CachedAnswer,
    CacheLookup,
    ChatRequest,
    Outcome,
    StageName,
    StageUnavailable,
    StoredEntry,
    TierAnswer,
)
from shared.chat import Finish
from shared.pricing import TokenUsage
from tests.unit.router.fakes import FakeCache, FakeModels, answer
from tests.unit.router.fixtures import admit_acme, policy_doc
from tests.unit.router.test_cache_stage import TRACER


@dataclass
class FakeFeed:
    """Answers polls from a script; an exception in it is raised."""

    script: list[ChangeBatch | Exception]
    polls: list[tuple[str, int, list[str]]] = field(default_factory=list)

    async def changes(
        self, epoch: str, after: int, served: list[str], wait_s: float
    ) -> ChangeBatch:
        self.polls.append((epoch, after, served))
        found = self.script.pop(0)
        if isinstance(found, Exception):
            raise found
        return found


@dataclass
class CountingCache(FakeCache):
    """A FakeCache that counts lookups and says what it stored, as the real client does."""

    lookups: int = 0
    ttl_s: float = 60.0

    async def lookup(self, request: ChatRequest, deadline: float) -> CacheLookup:
        self.lookups += 1
        return await super().lookup(request, deadline)

    async def store(  # type: ignore[override]
        self, request: ChatRequest, answer: TierAnswer, deadline: float
    ) -> StoredEntry:
        await super().store(request, answer, deadline)
        kept = CachedAnswer(
            "exact", answer.content, answer.model, answer.usage, 1.0, answer.finish, "e-stored"
        )
        return StoredEntry("e-stored", self.ttl_s, kept)


DOWN = StageUnavailable(StageName.CACHE, "UNAVAILABLE: connection refused")


def exact(entry_id: str = "e-1") -> CachedAnswer:
    return CachedAnswer(
        "exact", "Paris.", "cheap", TokenUsage(10, 5), 1.0, Finish.STOP, entry_id, (), 60.0
    )


def asked(question: str = "What is the capital of France?") -> ChatRequest:
    return admit_acme(policy_doc(), question)


def stage(cache: FakeCache, copies: ExactCopies) -> CacheStage:
    cascade = Cascade(FakeModels({"cheap": answer("Lyon.", "cheap")}), TRACER)
    audit = CacheAudit(cache, cascade, TRACER, sampler=AuditSampler(lambda: 0.0))
    return CacheStage(cache, audit, copies=copies)


async def test_the_follower_applies_removals_and_resets_and_reports_served_ids() -> None:
    copies = ExactCopies()
    feed = FakeFeed(
        [
            ChangeBatch("ep", 5, reset=True),
            ChangeBatch("ep", 6, reset=False, removed=("e-1",)),
            ChangeBatch("ep2", 0, reset=True),
        ]
    )
    follower = FeedFollower(feed, copies)
    await follower.poll_once()
    assert copies.live
    request = asked()
    copies.admit(copies.ticket(), request, exact("e-1"), 60)
    copies.admit(copies.ticket(), asked("Other?"), exact("e-2"), 60)
    assert copies.get(request) is not None
    await follower.poll_once()
    assert copies.get(request) is None and len(copies) == 1
    await follower.poll_once()  # another replica or a restart: nothing can be trusted
    assert len(copies) == 0
    assert feed.polls == [("", 0, []), ("ep", 5, ["e-1"]), ("ep", 6, [])]


async def test_a_failed_poll_drops_the_copies_and_starts_over() -> None:
    copies = ExactCopies()
    feed = FakeFeed([ChangeBatch("ep", 1, reset=True), DOWN, ChangeBatch("ep", 3, reset=True)])
    follower = FeedFollower(feed, copies)
    await follower.poll_once()
    copies.admit(copies.ticket(), asked(), exact(), 60)
    with pytest.raises(StageUnavailable):
        await follower.poll_once()
    assert len(copies) == 0 and not copies.live and copies.get(asked()) is None
    await follower.poll_once()
    assert copies.live and feed.polls[-1][:2] == ("", 0)


async def test_an_exact_hit_is_kept_and_the_next_one_needs_no_hop() -> None:
    copies = ExactCopies()
    copies.fresh(time.monotonic())
    cache = CountingCache(hit=exact())
    cache_stage = stage(cache, copies)
    request = asked()
    found, line = await cache_stage.before(request, deadline=1e12)
    assert found.hit is not None and not found.hit.local and line.detail == "exact hit"
    found, line = await cache_stage.before(request, deadline=1e12)
    assert cache.lookups == 1
    assert found.hit is not None and found.hit.local and found.hit.content == "Paris."
    assert (line.outcome, line.detail) == (Outcome.USED, "exact hit (router copy)")


async def test_a_semantic_hit_is_never_kept() -> None:
    copies = ExactCopies()
    copies.fresh(time.monotonic())
    semantic = CachedAnswer(
        "semantic", "Paris.", "cheap", TokenUsage(10, 5), 0.93, Finish.STOP, "e-9", (), 60.0
    )
    cache = CountingCache(hit=semantic)
    cache_stage = stage(cache, copies)
    for _ in range(2):
        await cache_stage.before(asked(), deadline=1e12)
    assert cache.lookups == 2 and len(copies) == 0


async def test_a_stored_answer_is_kept_for_the_next_identical_request() -> None:
    copies = ExactCopies()
    copies.fresh(time.monotonic())
    cache = CountingCache()
    cache_stage = stage(cache, copies)
    request = asked()
    found, _ = await cache_stage.before(request, deadline=1e12)
    cache_stage.after(request, found, answer("Paris.", "cheap"))
    await cache_stage.stores.drain()
    found, line = await cache_stage.before(request, deadline=1e12)
    assert cache.lookups == 1 and line.detail == "exact hit (router copy)"
    assert found.hit is not None and found.hit.entry_id == "e-stored"


async def test_without_a_live_feed_every_lookup_crosses_to_the_cache() -> None:
    copies = ExactCopies()  # never polled
    cache = CountingCache(hit=exact())
    cache_stage = stage(cache, copies)
    for _ in range(2):
        await cache_stage.before(asked(), deadline=1e12)
    assert cache.lookups == 2 and len(copies) == 0

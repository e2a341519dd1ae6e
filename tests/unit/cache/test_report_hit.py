"""ReportHit in the domain: a wrong hit is removed and counted, semantic verdicts calibrate the
namespace's threshold, the counts outlast a restart, and bad reports are refused by name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.cache.model import HitKind
from services.cache.store import Change, FeedbackAdded, FeedbackCount, MemoryStore, Resynced
from services.cache.verifiers.calibration import NamespaceCalibrator
from services.cache.verifiers.rules import RuleVerifier
from services.cache.verify import AcceptAll
from shared.errors import InvalidRequest, NotFound
from tests.unit.cache.fakes import answer, ask, make_cache

STORED = "what is the capital of france"
ASKED = "what is the capital of france please"  # hashing cosine 6 / sqrt(42) = 0.926


async def cache_with(store: MemoryStore, *, min_feedback: int = 3):
    cache = await make_cache(store=store, min_similarity=0.8, start=False)
    calibrator = NamespaceCalibrator(0.0, min_feedback=min_feedback)
    cache._verifier = RuleVerifier(calibrator=calibrator)  # constructor argument, swapped here
    cache._feedback = type(cache._feedback)(cache._verifier, store)
    await cache.start()
    return cache, calibrator


async def served(cache):
    entry = await cache.store(ask(STORED), answer())
    result = await cache.lookup(ask(ASKED))
    assert result.kind is HitKind.SEMANTIC and result.entry_id == entry.entry_id
    return result


async def test_a_wrong_semantic_hit_is_removed_counted_and_calibrates():
    store = MemoryStore()
    cache, calibrator = await cache_with(store)
    hit = await served(cache)
    report = await cache.report_hit(ask(ASKED), hit.entry_id, correct=False)
    assert (report.removed, report.calibrated) == (True, True)
    assert report.namespace == hit.namespace
    assert hit.entry_id not in store.records
    assert (await cache.lookup(ask(ASKED))).kind is HitKind.MISS
    stats = cache.stats("acme").counters
    assert stats.verification_failures == 1
    assert stats.invalidations == 0  # a report is not an Invalidate
    # Persisted under the rule verifier's scale, in the bin of the pair's cosine (0.926).
    assert [(k[0], k[2], v) for k, v in store.feedback.items()] == [("cosine", 925, [1, 1])]
    assert calibrator.threshold(hit.namespace) == 0.0  # fewer than min_feedback outcomes


async def test_right_verdicts_keep_the_entry_and_set_the_threshold_from_evidence():
    store = MemoryStore()
    cache, _ = await cache_with(store)
    hit = await served(cache)
    for _ in range(2):
        report = await cache.report_hit(ask(ASKED), hit.entry_id, correct=True)
        assert (report.removed, report.calibrated, report.threshold) == (False, True, 0.0)
    report = await cache.report_hit(ask(ASKED), hit.entry_id, correct=True)
    # Three clean outcomes at cosine 0.926: the namespace's bar is that bin's lower edge.
    assert report.threshold == pytest.approx(0.92)
    assert (await cache.lookup(ask(ASKED))).kind is HitKind.SEMANTIC
    assert cache.stats("acme").counters.verification_failures == 0


async def test_calibration_survives_a_restart_on_the_same_store():
    store = MemoryStore()
    cache, _ = await cache_with(store)
    hit = await served(cache)
    for _ in range(3):
        await cache.report_hit(ask(ASKED), hit.entry_id, correct=True)
    await cache.aclose()
    _, calibrator = await cache_with(store)
    assert calibrator.threshold(hit.namespace) == pytest.approx(0.92)
    # Counts filed under another scale (another model file) are not read back.
    store.feedback = {("learned:other", *key[1:]): value for key, value in store.feedback.items()}
    _, fresh = await cache_with(store)
    assert fresh.threshold(hit.namespace) == 0.0


async def test_an_exact_hit_is_removed_but_teaches_no_threshold():
    store = MemoryStore()
    cache, _ = await cache_with(store)
    entry = await cache.store(ask(STORED), answer())
    report = await cache.report_hit(ask(STORED), entry.entry_id, correct=False)
    assert (report.removed, report.calibrated, report.threshold) == (True, False, 0.0)
    assert store.feedback == {}
    assert cache.stats("acme").counters.verification_failures == 1


async def test_without_a_calibrated_verifier_reports_still_remove():
    cache = await make_cache(min_similarity=0.8)
    assert isinstance(cache._verifier, AcceptAll)
    hit = await served(cache)
    report = await cache.report_hit(ask(ASKED), hit.entry_id, correct=False)
    assert (report.removed, report.calibrated) == (True, False)


async def test_bad_reports_are_refused_with_the_problem_named():
    store = MemoryStore()
    cache, _ = await cache_with(store)
    hit = await served(cache)
    with pytest.raises(InvalidRequest, match="entry_id is required"):
        await cache.report_hit(ask(ASKED), "", correct=False)
    with pytest.raises(NotFound, match="holds no entries of tenant 'globex'"):
        await cache.report_hit(ask(ASKED, tenant="globex"), hit.entry_id, correct=False)
    with pytest.raises(NotFound, match="holds no entries"):
        await cache.report_hit(ask(ASKED, model_class="large"), hit.entry_id, correct=False)
    with pytest.raises(NotFound, match="not in namespace"):
        await cache.report_hit(ask(ASKED), "no-such-entry", correct=False)
    with pytest.raises(InvalidRequest, match="tenant_id"):
        await cache.report_hit(ask(ASKED, tenant=""), hit.entry_id, correct=False)
    await cache.store(ask("how do i bake bread"), answer("Flour."))  # keeps the namespace
    await cache.report_hit(ask(ASKED), hit.entry_id, correct=False)
    with pytest.raises(NotFound, match="already reported wrong"):
        await cache.report_hit(ask(ASKED), hit.entry_id, correct=False)
    assert cache.stats("acme").counters.verification_failures == 1


class FollowedStore(MemoryStore):
    """A shared store: `changes()` yields what the test puts in `feed` (other replicas)."""

    def __init__(self) -> None:
        super().__init__()
        self.feed: asyncio.Queue[Change] = asyncio.Queue()

    async def changes(self, dim: int) -> AsyncIterator[Change]:
        while True:
            yield await self.feed.get()
            # The cache asks for the next change only once it has applied this one.
            self.feed.task_done()


async def test_reports_made_on_other_replicas_calibrate_this_one_as_they_happen():
    store = FollowedStore()
    cache, calibrator = await cache_with(store)
    hit = await served(cache)
    for _ in range(3):
        store.feed.put_nowait(FeedbackAdded(FeedbackCount("cosine", hit.namespace, 925, 1, 0)))
    # Another verifier's scale is not this one's scores.
    store.feed.put_nowait(FeedbackAdded(FeedbackCount("learned:x", hit.namespace, 100, 9, 0)))
    await asyncio.wait_for(store.feed.join(), timeout=5)

    assert calibrator.threshold(hit.namespace) == pytest.approx(0.92)

    # After a gap in the feed, the summed counts in the store replace what was applied.
    store.feedback = {("cosine", hit.namespace, 925): [1, 0]}
    store.feed.put_nowait(Resynced(list(store.records.values())))
    await asyncio.wait_for(store.feed.join(), timeout=5)

    assert calibrator.threshold(hit.namespace) == 0.0  # 1 outcome < min_feedback
    await cache.aclose()

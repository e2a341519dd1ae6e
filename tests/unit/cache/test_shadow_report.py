"""Shadow checks in the domain: a miss names the nearest candidate verification turned down,
and a shadow verdict on it calibrates the namespace's threshold (down as well as up) without
removing the entry or counting a verification failure."""

from __future__ import annotations

import pytest

from services.cache.cache import SemanticCache
from services.cache.model import HitKind
from services.cache.store import MemoryStore
from services.cache.verifiers.calibration import NamespaceCalibrator
from services.cache.verifiers.rules import RuleVerifier
from services.cache.verify import Pair, Verdict, first_accepted
from shared.errors import InvalidRequest
from tests.unit.cache.fakes import FakeClock, answer, ask, make_cache

STORED = "what is the capital of france"
ASKED = "what is the capital of france please"  # hashing cosine 6 / sqrt(42) = 0.926
# Hashing-embedder cosines with STORED, best first: 0.926, 0.866 and 0.816.
NEIGHBOURS = {
    "what is the capital city of france": "Paris, the city.",
    "what is the capital of france today please": "Paris.",
    "the capital of france": "Still Paris.",
}


class RejectAll:
    def verify(self, pair: Pair) -> Verdict:
        return Verdict(False, "test")


class RejectFirst:
    """Turns down the first candidate it is shown, accepts the rest."""

    def __init__(self) -> None:
        self.shown = 0

    def verify(self, pair: Pair) -> Verdict:
        self.shown += 1
        return Verdict(self.shown > 1, "" if self.shown > 1 else "test")


async def calibrated_cache(
    store: MemoryStore, *, base: float, min_feedback: int = 3
) -> tuple[SemanticCache, NamespaceCalibrator]:
    """A cache whose rule verifier turns down cosines below `base` until feedback moves it."""
    cache = await make_cache(store=store, min_similarity=0.8, start=False)
    calibrator = NamespaceCalibrator(base, min_feedback=min_feedback)
    cache._verifier = RuleVerifier(calibrator=calibrator)  # constructor argument, swapped here
    cache._feedback = type(cache._feedback)(cache._verifier, store)
    await cache.start()
    return cache, calibrator


async def test_a_miss_names_the_most_similar_rejected_candidate():
    cache = await make_cache(min_similarity=0.8)
    stored = {text: await cache.store(ask(text), answer(c)) for text, c in NEIGHBOURS.items()}
    cache._verifier = RejectAll()  # a constructor argument; swapped here

    result = await cache.lookup(ask(STORED))

    assert (result.kind, result.rejected) == (HitKind.MISS, 3)
    nearest = result.nearest_rejected
    assert nearest is not None
    first = "what is the capital city of france"
    assert (nearest.entry_id, nearest.content) == (stored[first].entry_id, "Paris, the city.")
    assert nearest.similarity == pytest.approx(0.926, abs=1e-3)


async def test_hits_and_plain_misses_name_no_rejected_candidate():
    store = MemoryStore()
    cache, _ = await calibrated_cache(store, base=0.9)
    await cache.store(ask(STORED), answer())
    exact = await cache.lookup(ask(STORED))
    semantic = await cache.lookup(ask(ASKED))  # 0.926 clears the bar of 0.9
    unrelated = await cache.lookup(ask("how do i bake bread"))
    assert [r.kind for r in (exact, semantic, unrelated)] == [
        HitKind.EXACT,
        HitKind.SEMANTIC,
        HitKind.MISS,
    ]
    assert [r.nearest_rejected for r in (exact, semantic, unrelated)] == [None, None, None]


async def test_a_hit_after_a_rejection_names_no_rejected_candidate():
    cache = await make_cache(min_similarity=0.8)
    for text, content in NEIGHBOURS.items():
        await cache.store(ask(text), answer(content))
    cache._verifier = RejectFirst()
    result = await cache.lookup(ask(STORED))
    assert (result.kind, result.answer and result.answer.content) == (HitKind.SEMANTIC, "Paris.")
    assert (result.rejected, result.nearest_rejected) == (1, None)


async def test_expired_candidates_are_not_rejected_ones():
    clock = FakeClock()
    cache = await make_cache(min_similarity=0.8, clock=clock)
    await cache.store(ask(STORED), answer(), ttl_s=10)
    cache._verifier = RejectAll()
    clock.advance(11)
    result = await cache.lookup(ask(ASKED))
    assert (result.kind, result.rejected, result.nearest_rejected) == (HitKind.MISS, 0, None)


async def test_shadow_verdicts_calibrate_but_never_remove_or_count_as_failures():
    store = MemoryStore()
    cache, calibrator = await calibrated_cache(store, base=0.95, min_feedback=10)
    entry = await cache.store(ask(STORED), answer())
    miss = await cache.lookup(ask(ASKED))
    assert miss.nearest_rejected is not None and miss.nearest_rejected.entry_id == entry.entry_id

    right = await cache.report_hit(ask(ASKED), entry.entry_id, correct=True, shadow=True)
    wrong = await cache.report_hit(ask(ASKED), entry.entry_id, correct=False, shadow=True)

    for report in (right, wrong):
        assert (report.removed, report.calibrated, report.threshold) == (False, True, 0.95)
    # Both persisted in the bin of the pair's cosine (0.926), like served verdicts, for the
    # namespace and for the entry (the error bound's per-entry evidence).
    assert store.feedback == {
        ("cosine", miss.namespace, 925): [2, 1],
        ("cosine", f"entry:{entry.entry_id}", 925): [2, 1],
    }
    assert entry.entry_id in store.records
    assert (await cache.lookup(ask(STORED))).entry_id == entry.entry_id
    counters = cache.stats("acme").counters
    assert (counters.verification_failures, counters.invalidations) == (0, 0)
    assert (counters.shadow_reports, counters.shadow_agreements) == (2, 1)
    assert calibrator.threshold(miss.namespace) == 0.95  # 2 outcomes < min_feedback


async def test_shadow_right_verdicts_below_the_bar_lower_it():
    store = MemoryStore()
    cache, calibrator = await calibrated_cache(store, base=0.95)
    entry = await cache.store(ask(STORED), answer())
    miss = await cache.lookup(ask(ASKED))
    assert (miss.kind, miss.rejected) == (HitKind.MISS, 1)

    for _ in range(3):
        report = await cache.report_hit(ask(ASKED), entry.entry_id, correct=True, shadow=True)

    # Three clean outcomes at cosine 0.926: the bar falls from the shared 0.95 to that bin.
    assert report.threshold == pytest.approx(0.92)
    assert calibrator.threshold(miss.namespace) < calibrator.base_threshold
    hit = await cache.lookup(ask(ASKED))
    assert (hit.kind, hit.entry_id) == (HitKind.SEMANTIC, entry.entry_id)


async def test_a_shadow_report_on_the_exact_entry_is_refused():
    store = MemoryStore()
    cache, _ = await calibrated_cache(store, base=0.95)
    entry = await cache.store(ask(STORED), answer())
    with pytest.raises(InvalidRequest, match=r"shadow: .* stored for exactly this request"):
        await cache.report_hit(ask(STORED), entry.entry_id, correct=True, shadow=True)
    assert store.feedback == {}
    assert entry.entry_id in store.records


async def test_a_wrong_served_hit_is_still_removed_after_shadow_reports():
    store = MemoryStore()
    cache, _ = await calibrated_cache(store, base=0.0)
    entry = await cache.store(ask(STORED), answer())
    await cache.report_hit(ask(ASKED), entry.entry_id, correct=False, shadow=True)
    assert (await cache.lookup(ask(ASKED))).kind is HitKind.SEMANTIC
    report = await cache.report_hit(ask(ASKED), entry.entry_id, correct=False)
    assert (report.removed, report.calibrated) == (True, True)
    assert entry.entry_id not in store.records
    assert cache.stats("acme").counters.verification_failures == 1


async def test_a_shadow_verdict_on_a_candidate_a_check_vetoes_moves_no_bar():
    store = MemoryStore()
    cache, calibrator = await calibrated_cache(store, base=0.8, min_feedback=1)
    # Hashing cosine 7/8 = 0.875, above the bar, but the years differ: the date check vetoes.
    entry = await cache.store(ask("what was the capital of france in 1990"), answer())
    asked = ask("what was the capital of france in 2020")
    miss = await cache.lookup(asked)
    # Turned down, but not for want of score: no candidate is named for a shadow check.
    assert (miss.kind, miss.rejected, miss.nearest_rejected) == (HitKind.MISS, 1, None)

    # A caller that names it anyway is not counted either: counted, a wrong verdict would raise
    # the bar against every paraphrase near 0.875 for a mismatch the check already catches.
    report = await cache.report_hit(asked, entry.entry_id, correct=False, shadow=True)

    assert (report.removed, report.calibrated) == (False, False)
    assert store.feedback == {}
    assert cache.stats("acme").counters.shadow_reports == 0
    assert calibrator.threshold(miss.namespace) == 0.8


class VetoFirstBarSecond:
    """Vetoes the first candidate, finds the second short of the bar, accepts none."""

    def __init__(self) -> None:
        self.shown = 0

    def verify(self, pair: Pair) -> Verdict:
        self.shown += 1
        return Verdict(False, "number", vetoed=True) if self.shown == 1 else Verdict(False, "bar")


def test_the_nearest_candidate_short_of_the_bar_is_named_not_a_vetoed_closer_one():
    pairs = [
        (name, Pair("asked", name, similarity, "ns"))
        for name, similarity in (("vetoed", 0.97), ("short", 0.93), ("shorter", 0.91))
    ]

    choice = first_accepted(VetoFirstBarSecond(), pairs)

    assert (choice.item, choice.rejected) == (None, 3)
    assert choice.nearest_rejected is not None and choice.nearest_rejected.item == "short"


def test_a_candidate_both_under_the_bar_and_vetoed_is_not_offered_for_a_shadow_check():
    verifier = RuleVerifier(calibrator=NamespaceCalibrator(0.95))
    # Cosine 0.9 is under the bar of 0.95, and the years differ: a check would veto it too.
    pair = Pair("capital of france in 2020", "capital of france in 1990", 0.9, "ns")

    verdict = verifier.verify(pair)

    assert (verdict.accepted, verdict.reason, verdict.vetoed) == (
        False,
        "namespace_threshold",
        True,
    )
    assert first_accepted(verifier, [("entry", pair)]).nearest_rejected is None

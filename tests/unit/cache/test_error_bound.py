"""A tenant's error bound (Lookup's max_wrong_rate): a semantic candidate is served only where
recorded verdicts prove the bound at its score, per namespace and per entry; an unproven one is
a miss named for a shadow check; the evidence survives a restart."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from services.cache.model import CacheRequest, HitKind
from services.cache.store import MemoryStore
from services.cache.verifiers.calibration import bound_threshold, wrong_rate_upper
from shared.errors import InvalidRequest
from tests.unit.cache.fakes import answer, ask, make_cache
from tests.unit.cache.test_shadow_report import ASKED, STORED, calibrated_cache

# The hashing cosine of ASKED against STORED is 0.926; the rule verifier alone serves it.
OTHER = "what is the capital of france please now"  # 0.866 to STORED


# scipy.stats.beta.ppf(0.95, wrong + 1, seen - wrong), the one-sided Clopper-Pearson bound.
@pytest.mark.parametrize(
    ("wrong", "seen", "exact"),
    [
        (1, 100, 0.046559811453538935),
        (2, 300, 0.020836230527024657),
        (5, 100, 0.1022533776432745),
        (40, 1000, 0.051753401352160444),
        (3, 20, 0.3436638043142818),
    ],
)
def test_the_upper_bound_is_clopper_pearsons(wrong: int, seen: int, exact: float) -> None:
    assert wrong_rate_upper(wrong, seen) == pytest.approx(exact, rel=1e-6)


def test_a_clean_record_needs_about_three_over_the_bound_outcomes() -> None:
    assert wrong_rate_upper(0, 299) <= 0.01 < wrong_rate_upper(0, 298)
    assert wrong_rate_upper(0, 59) <= 0.05 < wrong_rate_upper(0, 58)
    assert wrong_rate_upper(0, 0) == 1.0 and wrong_rate_upper(3, 3) == 1.0


def test_the_bar_is_the_lowest_edge_whose_outcomes_above_prove_the_bound() -> None:
    seen, wrong = np.zeros(10), np.zeros(10)
    seen[9], seen[7], seen[5] = 100, 100, 100
    wrong[5] = 30  # bin 5 is bad; from bin 7 up: 0 wrong in 200
    assert bound_threshold(seen, wrong, 0.05) == 0.7
    assert bound_threshold(seen, wrong, 0.01) == math.inf  # 200 clean outcomes are too few
    seen[8] = 200
    assert bound_threshold(seen, wrong, 0.01) == 0.7  # 400 clean from 0.7 up


async def test_a_cold_namespace_serves_nothing_semantic_and_names_the_candidate() -> None:
    cache, _ = await calibrated_cache(MemoryStore(), base=0.0)
    stored = await cache.store(ask(STORED), answer())
    assert (await cache.lookup(ask(ASKED))).kind is HitKind.SEMANTIC  # no bound: served
    bounded = await cache.lookup(_bounded(ASKED, 0.05))
    assert bounded.kind is HitKind.MISS and bounded.rejected == 1
    assert bounded.nearest_rejected is not None
    assert bounded.nearest_rejected.entry_id == stored.entry_id
    assert (await cache.lookup(_bounded(STORED, 0.05))).kind is HitKind.EXACT


async def test_shadow_verdicts_prove_the_bound_then_hits_are_served() -> None:
    cache, _ = await calibrated_cache(MemoryStore(), base=0.0, min_feedback=10_000)
    stored = await cache.store(ask(STORED), answer())
    for _ in range(58):
        await cache.report_hit(ask(ASKED), stored.entry_id, correct=True, shadow=True)
    assert (await cache.lookup(_bounded(ASKED, 0.05))).kind is HitKind.MISS  # 58 < 59
    await cache.report_hit(ask(ASKED), stored.entry_id, correct=True, shadow=True)
    served = await cache.lookup(_bounded(ASKED, 0.05))
    assert (served.kind, served.entry_id) == (HitKind.SEMANTIC, stored.entry_id)
    assert (await cache.lookup(_bounded(ASKED, 0.01))).kind is HitKind.MISS  # stricter


async def test_an_entry_found_wrong_at_a_score_is_not_served_at_or_below_it() -> None:
    cache, _ = await calibrated_cache(MemoryStore(), base=0.0, min_feedback=10_000)
    stored = await cache.store(ask(STORED), answer())
    other = await cache.store(ask("what is the capital of spain"), answer("Madrid."))
    # The namespace is proven at 0.926 by another entry's clean record...
    for _ in range(80):
        await cache.report_hit(
            ask("what is the capital of spain please"), other.entry_id, correct=True, shadow=True
        )
    assert (await cache.lookup(_bounded(ASKED, 0.05))).kind is HitKind.SEMANTIC
    # ...but this entry was once wrong at that closeness: it is refused there, and below.
    await cache.report_hit(ask(ASKED), stored.entry_id, correct=False, shadow=True)
    refused = await cache.lookup(_bounded(ASKED, 0.05))
    assert refused.kind is HitKind.MISS
    assert refused.nearest_rejected is not None
    assert refused.nearest_rejected.entry_id == stored.entry_id


async def test_an_entrys_own_clean_record_below_a_score_proves_it() -> None:
    cache, _ = await calibrated_cache(MemoryStore(), base=0.0, min_feedback=10_000)
    stored = await cache.store(ask(STORED), answer())
    # Right at 0.866 (OTHER), 59 times: the entry is proven at the closer 0.926 too. The
    # namespace counts alone prove only scores from 0.866 up, which 0.926 also is; so a wrong
    # outcome at 0.866 for another entry keeps the namespace from proving anything.
    spare = await cache.store(ask("what is the capital of peru"), answer("Lima."))
    for _ in range(59):
        await cache.report_hit(ask(OTHER), stored.entry_id, correct=True, shadow=True)
    for _ in range(10):
        await cache.report_hit(
            ask("what is the capital of peru please"), spare.entry_id, correct=False, shadow=True
        )
    served = await cache.lookup(_bounded(ASKED, 0.05))
    assert (served.kind, served.entry_id) == (HitKind.SEMANTIC, stored.entry_id)


async def test_the_evidence_survives_a_restart() -> None:
    store = MemoryStore()
    cache, _ = await calibrated_cache(store, base=0.0, min_feedback=10_000)
    stored = await cache.store(ask(STORED), answer())
    for _ in range(59):
        await cache.report_hit(ask(ASKED), stored.entry_id, correct=True, shadow=True)
    await cache.report_hit(ask(OTHER), stored.entry_id, correct=False, shadow=True)
    await cache.aclose()
    restarted, _ = await calibrated_cache(store, base=0.0, min_feedback=10_000)
    # 59 right at 0.926 and 1 wrong at 0.866 for this entry: served at 0.926 after a restart.
    assert (await restarted.lookup(_bounded(ASKED, 0.05))).kind is HitKind.SEMANTIC
    assert (await restarted.lookup(_bounded(OTHER, 0.05))).kind is HitKind.MISS


@pytest.mark.parametrize("rate", [0.0, 1.0, -0.1, float("nan")])
async def test_a_bound_outside_zero_to_one_is_refused(rate: float) -> None:
    cache = await make_cache()
    with pytest.raises(InvalidRequest, match="max_wrong_rate must be in"):
        await cache.lookup(_bounded(ASKED, rate))


def _bounded(text: str, rate: float) -> CacheRequest:
    return dataclasses.replace(ask(text), max_wrong_rate=rate)

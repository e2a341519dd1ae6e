"""The QQP label audit's readings: a fixed sample of fit-half pairs QQP calls non-duplicates."""

from __future__ import annotations

import pytest

from benchmarks.cache_quality_data import qqp_rows
from benchmarks.common import DEFAULT_DATA, is_fit
from benchmarks.qqp_label_audit import (
    AMBIGUOUS,
    DIFFERENT,
    SAME,
    SAMPLE,
    perfect_verifier_floor,
    read_readings,
)


def test_every_reading_is_one_of_the_three_and_a_difference_says_what_differs() -> None:
    readings = read_readings()
    assert len(readings) == SAMPLE
    assert {r["reading"] for r in readings} <= {SAME, DIFFERENT, AMBIGUOUS}
    assert all(r["note"] for r in readings if r["reading"] == DIFFERENT)
    assert all(float(str(r["cosine"])) >= 0.90 for r in readings)


@pytest.mark.skipif(not DEFAULT_DATA.exists(), reason="needs ../shared/data")
def test_every_pair_is_a_fit_half_qqp_pair_labelled_non_duplicate() -> None:
    labels = {(str(r["text_a"]), str(r["text_b"])): r["label"] for r in qqp_rows(DEFAULT_DATA)}
    for reading in read_readings():
        pair = (str(reading["stored"]), str(reading["asked"]))
        assert labels[pair] == 0, pair
        assert is_fit("\n".join(pair)), pair


def test_the_perfect_verifier_floor_counts_the_same_question_pairs_as_charged_wrong() -> None:
    # 100 labelled duplicates, 20 labelled wrong of which half read as the same question: a
    # verifier serving the 100 and those 10 is charged 10 wrong of 110.
    counts = {SAME: 20, DIFFERENT: 10, AMBIGUOUS: 10}
    estimate, low, high = perfect_verifier_floor(100, 20, counts)
    assert estimate == pytest.approx(10 / 110)
    assert low < estimate < high
    assert perfect_verifier_floor(100, 20, {SAME: 0, DIFFERENT: 40, AMBIGUOUS: 0})[0] == 0

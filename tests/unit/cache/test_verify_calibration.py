"""Per-namespace thresholds: shared until a namespace has enough labelled feedback, then the
lowest score at which its own wrong-answer rate stays within the target."""

from __future__ import annotations

import numpy as np
import pytest

from services.cache.verifiers.calibration import NamespaceCalibrator, bin_of, solve_threshold

BINS = 10


def counts(rows: dict[int, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """bin index -> (seen, wrong)."""
    seen, wrong = np.zeros(BINS), np.zeros(BINS)
    for index, (s, w) in rows.items():
        seen[index], wrong[index] = s, w
    return seen, wrong


def test_threshold_is_the_lowest_edge_within_the_target():
    # From 0.8 up: 4 wrong of 900 = 0.44%; from 0.7 up: 14 of 1000 = 1.4%.
    seen, wrong = counts({9: (500, 0), 8: (400, 4), 7: (100, 10), 6: (100, 50)})
    assert solve_threshold(seen, wrong, 0.01) == pytest.approx(0.8)
    assert solve_threshold(seen, wrong, 0.02) == pytest.approx(0.7)
    assert solve_threshold(seen, wrong, 0.001) == pytest.approx(0.9)


def test_nothing_safe_means_serve_nothing():
    assert solve_threshold(*counts({9: (10, 5)}), 0.01) == 1.0


def test_empty_bins_are_never_edges():
    assert solve_threshold(*counts({9: (100, 0)}), 0.01) == pytest.approx(0.9)


def test_bins_cover_the_unit_interval():
    scores = (-0.1, 0.0, 0.05, 0.1, 0.999, 1.0, 1.2)
    assert [bin_of(s, BINS) for s in scores] == [0, 0, 0, 1, 9, 9, 9]


def feed(calibrator: NamespaceCalibrator, namespace: str, score: float, right: int, wrong: int):
    for _ in range(right):
        calibrator.record(namespace, score, correct=True)
    for _ in range(wrong):
        calibrator.record(namespace, score, correct=False)


def test_shared_threshold_until_enough_feedback():
    calibrator = NamespaceCalibrator(0.8, min_feedback=100, bins=BINS)
    assert calibrator.threshold("fresh") == 0.8
    feed(calibrator, "bank", 0.85, right=90, wrong=9)
    assert calibrator.threshold("bank") == 0.8  # 99 outcomes: not yet
    feed(calibrator, "bank", 0.95, right=1, wrong=0)
    assert calibrator.threshold("bank") == pytest.approx(0.9)


def test_wrong_hits_raise_one_namespace_only():
    calibrator = NamespaceCalibrator(0.8, min_feedback=50, bins=BINS)
    feed(calibrator, "bank", 0.95, right=100, wrong=0)
    feed(calibrator, "bank", 0.85, right=90, wrong=10)
    assert calibrator.threshold("bank") == pytest.approx(0.9)
    assert calibrator.threshold("general") == 0.8


def test_clean_shadow_feedback_lowers_the_bar():
    calibrator = NamespaceCalibrator(0.8, min_feedback=50, bins=BINS)
    feed(calibrator, "faq", 0.75, right=300, wrong=1)
    assert calibrator.threshold("faq") == pytest.approx(0.7)


def test_shadow_outcomes_below_the_shared_bar_lower_it_under_default_settings():
    # Served hits all score at or above the shared bar; only shadow checks of rejected
    # candidates land below it. The solve is not clamped to the shared threshold.
    calibrator = NamespaceCalibrator(0.8)
    feed(calibrator, "faq", 0.93, right=150, wrong=0)  # served hits
    feed(calibrator, "faq", 0.725, right=60, wrong=1)  # shadow checks: 1 wrong in 211
    assert calibrator.threshold("faq") == pytest.approx(0.72)
    assert calibrator.threshold("faq") < calibrator.base_threshold


def test_a_namespace_where_nothing_is_safe_serves_nothing():
    calibrator = NamespaceCalibrator(0.8, min_feedback=10, bins=BINS)
    feed(calibrator, "noisy", 0.95, right=10, wrong=10)
    assert calibrator.threshold("noisy") == 1.0


def test_namespace_state_is_bounded_least_recently_used_first():
    calibrator = NamespaceCalibrator(0.8, min_feedback=1, max_namespaces=2, bins=BINS)
    feed(calibrator, "a", 0.95, right=0, wrong=5)
    feed(calibrator, "b", 0.95, right=0, wrong=5)
    assert calibrator.threshold("a") == 1.0  # touches "a", so "b" is now the oldest
    feed(calibrator, "c", 0.95, right=5, wrong=0)
    assert calibrator.threshold("a") == 1.0
    assert calibrator.threshold("b") == 0.8  # forgotten: back to the shared threshold


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="target_wrong_rate"):
        NamespaceCalibrator(0.5, target_wrong_rate=0.0)
    with pytest.raises(ValueError, match="base_threshold"):
        NamespaceCalibrator(1.5)

from __future__ import annotations

import math

import pytest

from services.router.learning.metrics import apgr, pgr


def test_pgr_is_the_share_of_the_gap_recovered() -> None:
    assert pgr(0.75, weak=0.5, strong=1.0) == pytest.approx(0.5)
    assert math.isnan(pgr(0.7, weak=0.7, strong=0.7))


def test_a_random_router_recovers_half_the_gap() -> None:
    # Accuracy grows linearly with the share of strong calls: RouteLLM's random router.
    points = [(x / 10, 0.6 + 0.3 * x / 10) for x in range(11)]
    assert apgr(points, weak=0.6, strong=0.9) == pytest.approx(0.5)


def test_reaching_strong_quality_at_once_scores_near_one() -> None:
    points = [(0.0, 0.6), (0.01, 0.9), (1.0, 0.9)]
    assert apgr(points, weak=0.6, strong=0.9) == pytest.approx(0.995)


def test_points_are_sorted_and_beating_strong_exceeds_one() -> None:
    points = [(1.0, 1.0), (0.0, 0.6), (0.1, 1.0)]
    assert apgr(points, weak=0.6, strong=0.9) > 1.0


def test_a_curve_without_span_has_no_area() -> None:
    assert math.isnan(apgr([(0.3, 0.7), (0.3, 0.8)], weak=0.6, strong=0.9))

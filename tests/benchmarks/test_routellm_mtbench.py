"""MT-Bench per-question and per-turn replays, the oracle bound and the bootstrap spread."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.routellm_curves import Case, apgr, curve
from benchmarks.routellm_mtbench import (
    CROSS,
    HELD,
    MtQuestion,
    auc,
    bootstrap_apgr,
    evaluate_rows,
    row_apgr,
    served,
    summary,
    turn_curve,
)


def scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mixtral's judge scores vary per turn; GPT-4 scores 9 on every turn."""
    rng = np.random.default_rng(seed)
    weak = rng.permutation(np.linspace(2.0, 9.5, 2 * n)).reshape(n, 2)
    return weak, np.full((n, 2), 9.0)


def test_when_both_turns_pass_the_replay_serves_the_weak_model_score() -> None:
    weak, strong = scores(6, 0)
    keep = np.zeros((6, 2), dtype=bool)
    for mixed in ("recorded", "low", "high"):
        assert served(weak, strong, keep, mixed) == pytest.approx(weak.mean())
    points = turn_curve(weak, strong, weak)
    assert points.share[0] == 0.0
    assert points.quality[0] == pytest.approx(weak.mean())


def test_the_per_turn_oracle_beats_any_other_per_turn_gate() -> None:
    # GPT-4 is the same on every turn, so escalating Mixtral's lowest-scored turns first is
    # the best order at every share; distinct scores put every gate at the same 11 shares.
    weak, strong = scores(10, 1)
    oracle = row_apgr(weak, strong, weak)
    rng = np.random.default_rng(2)
    for _ in range(20):
        gate = rng.permutation(np.arange(20.0)).reshape(10, 2)
        assert oracle >= row_apgr(weak, strong, gate) - 1e-12
    assert oracle > row_apgr(weak, strong, -weak)


def test_a_per_question_gate_moves_both_turns_and_matches_the_question_level_curve() -> None:
    weak, strong = scores(10, 3)
    gate = np.arange(10.0)[::-1]
    cases = [
        Case(f"q{i}", float(weak[i].mean()), float(strong[i].mean()), "", 0.0, 0.0)
        for i in range(10)
    ]
    expected = apgr(curve(cases, gate), float(weak.mean()), float(strong.mean()))
    assert row_apgr(weak, strong, gate) == pytest.approx(expected)


def test_mixed_conversations_score_turn_two_as_recorded_or_at_the_bounds() -> None:
    weak = np.array([[4.0, 8.0]])
    strong = np.array([[9.0, 6.0]])
    first_only = np.array([[True, False]])
    assert served(weak, strong, first_only) == pytest.approx((9.0 + 8.0) / 2)
    assert served(weak, strong, first_only, "low") == pytest.approx((9.0 + 6.0) / 2)
    assert served(weak, strong, first_only, "high") == pytest.approx((9.0 + 8.0) / 2)
    both = np.array([[True, True]])
    assert served(weak, strong, both, "low") == pytest.approx((9.0 + 6.0) / 2)


def test_the_bootstrap_interval_contains_the_point_estimate() -> None:
    rng = np.random.default_rng(4)
    weak = rng.integers(3, 10, (30, 2)).astype(np.float64)
    strong = np.clip(weak + rng.integers(0, 4, (30, 2)), 1, 10).astype(np.float64)
    gate = weak + rng.normal(0, 2, (30, 2))
    low, high = bootstrap_apgr(weak, strong, gate, resamples=300)
    assert low <= row_apgr(weak, strong, gate) <= high
    assert bootstrap_apgr(weak, strong, gate, resamples=300) == (low, high)


def test_auc_ranks_signals_and_is_half_without_signal() -> None:
    labels = np.array([True, True, False, False])
    assert auc(np.array([2.0, 3.0, 0.0, 1.0]), labels) == 1.0
    assert auc(np.zeros(4), labels) == 0.5


def test_rows_cover_both_samples_and_the_summary_keeps_its_keys() -> None:
    questions = [
        MtQuestion(
            (f"Question {i} about topic {i * 7}?", "And a follow-up?"),
            (float(3 + i % 7), float(2 + i % 5)),
            (9.0, 8.0),
            ("Perhaps. " * (i % 3) + "An answer." * (1 + i % 4), "A short reply."),
        )
        for i in range(24)
    ]
    held = sum(not q.fit for q in questions)
    assert 0 < held < len(questions)
    rows = evaluate_rows(questions, resamples=50)
    assert [r["n"] for r in rows] == [held] * 4 + [len(questions)] * 4
    assert {r["sample"] for r in rows} == {HELD, CROSS}
    keys = summary(rows)
    for key in ("mtbench_apgr_ci90", "mtbench_apgr_per_turn", "mtbench_oracle_apgr_per_turn"):
        assert key in keys
    assert "mtbench_crossfit72_oracle_apgr_per_turn" in keys

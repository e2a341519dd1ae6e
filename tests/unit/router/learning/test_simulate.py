from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from services.router.learning.simulate import (
    Case,
    fit_thresholds,
    oracle,
    run_cascade,
    score_table,
    table_outcomes,
)
from tests.unit.router.learning.fixtures import ARC_PROMPT, cases, item

CHAIN = ("small", "mid", "big")


def two_cases() -> list[Case]:
    return cases(
        [
            item(
                "q1",
                ARC_PROMPT,
                {"small": ("A", False, 1.0), "mid": ("C", True, 2.0), "big": ("C", True, 10.0)},
            ),
            item("q2", ARC_PROMPT, {"small": ("C", True, 1.0), "big": ("C", True, 10.0)}),
        ]
    )


def test_every_tier_called_is_paid_and_a_missing_answer_is_free() -> None:
    q1, q2 = two_cases()
    never = run_cascade(q1, CHAIN, lambda *_: False, strong="big")
    assert (never.model, never.cost_usd, never.strong_called) == ("big", 13.0, True)
    skipped = run_cascade(q2, CHAIN, lambda c, pos, m, e: m == "big", strong="big")
    assert skipped.cost_usd == 11.0  # small paid, mid has no answer, big paid
    assert run_cascade(q1, CHAIN, lambda *_: True, strong="big", start=1).cost_usd == 2.0


def test_earlier_answers_are_those_actually_seen() -> None:
    q2 = two_cases()[1]
    seen: list[tuple[str, ...]] = []

    def never(c: Case, pos: int, m: str, earlier: tuple[str, ...]) -> bool:
        seen.append(earlier)
        return False

    run_cascade(q2, CHAIN, never, strong="big")
    assert seen == [()]  # only small was judged; mid had no answer and big always accepts


def test_the_oracle_takes_the_cheapest_correct_model() -> None:
    q1, q2 = two_cases()
    assert oracle(q1, ["small", "mid", "big"], "big").model == "mid"
    assert oracle(q2, ["small", "big"], "big").cost_usd == 1.0


def test_vectorised_tables_match_the_step_by_step_cascade() -> None:
    data = two_cases()
    scores = {("q1", "small"): 0.3, ("q1", "mid"): 0.8, ("q2", "small"): 0.6}

    def batch(requests: Sequence[tuple[int, str, tuple[str, ...]]]) -> NDArray[np.float64]:
        return np.asarray([scores[(data[i].item.sample_id, m)] for i, m, _ in requests])

    table = score_table(data, CHAIN, batch)
    for thresholds in ((0.5, 0.5), (0.7, 0.9), (0.0, 0.0)):
        correct, cost, strong = table_outcomes(table, thresholds)
        for i, case in enumerate(data):

            def accept(c: Case, pos: int, m: str, e: tuple[str, ...], bars=thresholds) -> bool:
                return scores[(c.item.sample_id, m)] >= bars[pos]

            step = run_cascade(case, CHAIN, accept, strong="big")
            assert (bool(correct[i]), cost[i], bool(strong[i])) == (
                step.correct,
                step.cost_usd,
                step.strong_called,
            )


def test_threshold_fitting_respects_caps_and_the_accuracy_floor() -> None:
    data = two_cases()
    table = score_table(data, CHAIN, lambda r: np.asarray([0.3, 0.8, 0.6][: len(r)]))
    everyone = np.asarray([True, True])
    capped = fit_thresholds(table, cost_caps=[(everyone, 2.0)])
    assert capped is not None and capped[1].cost_per_1k <= 2000.0
    assert fit_thresholds(table, cost_caps=[(everyone, 0.5)]) is None
    cheapest_right = fit_thresholds(table, min_accuracy=1.0)
    assert cheapest_right is not None and cheapest_right[1].accuracy == 1.0
    assert cheapest_right[1].cost_per_1k == 2000.0  # q1 stops at mid (1 + 2), q2 at small (1)

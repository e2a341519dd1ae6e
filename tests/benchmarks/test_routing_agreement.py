"""The agreement-cascade search: who is asked, what is paid, which answer is served."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.routing_agreement import (
    GPT4,
    UNPARSED,
    Policy,
    Table,
    best_within,
    build_table,
    cheapest_reaching,
    policies,
    run_policy,
    score_family,
)
from services.router.learning.data import Item, Recorded

CHOICE = "Which is right?\nA) one\nB) two\nAnswer:"
MODELS = ("a", "b", "c", GPT4)


def _table(answers: list[list[int]], correct: list[list[bool]]) -> Table:
    """Cheap calls cost 1, 2 and 4; GPT-4 costs 10."""
    rows = len(answers)
    cost = np.tile(np.array([1.0, 2.0, 4.0, 10.0]), (rows, 1))
    return Table(MODELS, np.array(answers, dtype=np.int64), np.array(correct, dtype=np.bool_), cost)


def test_two_agreeing_cheap_answers_are_served_without_asking_the_rest() -> None:
    table = _table([[0, 0, 1, 1]], [[True, True, False, False]])

    result = run_policy(table, Policy(("a", "b", "c"), need=2))

    assert result.correct.tolist() == [True]
    assert result.cost.tolist() == [3.0]  # a and b only


def test_a_third_call_breaks_a_tie_and_its_majority_is_served() -> None:
    table = _table([[0, 1, 1, 0]], [[True, False, False, True]])

    result = run_policy(table, Policy(("a", "b", "c"), need=2))

    assert result.correct.tolist() == [False]  # b and c agree on the wrong answer
    assert result.cost.tolist() == [7.0]


def test_once_no_answer_can_reach_the_votes_gpt4_is_asked_without_the_remaining_calls() -> None:
    table = _table([[0, 1, 0, 2]], [[False, False, False, True]])

    result = run_policy(table, Policy(("a", "b", "c"), need=3))

    # After a and b differ, even c agreeing would give two votes: c is never paid for.
    assert result.correct.tolist() == [True]
    assert result.cost.tolist() == [13.0]


def test_unparsed_answers_never_count_as_agreement() -> None:
    table = _table([[UNPARSED, UNPARSED, 0, 0]], [[False, False, True, True]])

    result = run_policy(table, Policy(("a", "b", "c"), need=2))

    # a and b both gave nothing usable, so c alone could not make two votes: GPT-4 answers.
    assert result.correct.tolist() == [True]
    assert result.cost.tolist() == [13.0]


def test_the_family_holds_every_ordered_chain_with_every_quorum() -> None:
    family = policies(("a", "b", "c"), max_chain=2)

    # 3 chains of one (quorum 1) + 6 ordered pairs (quorum 1 or 2).
    assert len(family) == 3 + 6 * 2
    assert Policy(("b", "a"), 2) in family


def test_best_within_keeps_to_the_budget_and_cheapest_reaching_matches_accuracy() -> None:
    # Two prompts: a is right on the first only; b, dearer, is right on both.
    table = _table(
        [[0, 1, 5, 1], [0, 1, 5, 1]], [[True, True, False, True], [False, True, False, True]]
    )
    scored = score_family(table, [Policy(("a",), 1), Policy(("b",), 1)])

    assert best_within(scored, budget=0.15).policy == Policy(("a",), 1)
    assert best_within(scored, budget=0.25).policy == Policy(("b",), 1)
    reaching = cheapest_reaching(scored, accuracy=1.0)
    assert reaching is not None and reaching.cost_share == pytest.approx(0.2)
    assert cheapest_reaching(scored, accuracy=1.01) is None


def test_tables_read_canonical_letters_and_drop_prompts_missing_a_label() -> None:
    def item(sample: str, texts: dict[str, str], missing: str = "") -> Item:
        answers = {
            m: Recorded(text, None if m == missing else text.startswith("A"), 0.001)
            for m, text in texts.items()
        }
        return Item(sample, "arc", CHOICE, answers)

    texts = {"a": "A", "b": "The answer is A.", "c": "B) two", GPT4: "gibberish"}
    table = build_table([item("1", texts), item("2", texts, missing="c")], MODELS)

    assert table.answers.shape == (1, 4)
    first, second, third, fourth = table.answers[0].tolist()
    assert first == second != third
    assert fourth == UNPARSED

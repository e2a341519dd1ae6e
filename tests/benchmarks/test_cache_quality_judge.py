"""The Gemma-judge experiment's pure parts: few-shot selection and prompt, AUC, and the
precision at a share of duplicates accepted. No llama_cpp needed."""

from __future__ import annotations

import pytest

from benchmarks.cache_quality_judge import (
    INSTRUCTION,
    QqpPair,
    at_recall,
    build_prefix,
    choose_shots,
    format_item,
    roc_auc,
)


def pairs(count: int, fit: bool = True) -> list[QqpPair]:
    return [QqpPair(f"stored {i}?", f"query {i}?", i % 2 == 0, fit, 0.8) for i in range(count)]


def test_shots_are_balanced_alternating_and_deterministic() -> None:
    shots = choose_shots(pairs(40), 6)
    assert [s.duplicate for s in shots] == [True, False] * 3
    assert shots == choose_shots(list(reversed(pairs(40))), 6)


def test_odd_shot_count_keeps_one_more_duplicate() -> None:
    assert [s.duplicate for s in choose_shots(pairs(40), 5)] == [True, False, True, False, True]


def test_shots_refuse_held_back_pairs_and_skip_long_texts() -> None:
    with pytest.raises(ValueError, match="fit half"):
        choose_shots(pairs(10, fit=False), 2)
    long = [QqpPair("x" * 200, "y?", i % 2 == 0, True) for i in range(10)]
    with pytest.raises(ValueError, match="not enough"):
        choose_shots(long, 2)


def test_prompt_answers_every_shot_and_ends_open() -> None:
    shots = [QqpPair("How do I sell\na domain?", "How to sell a domain?", True, True),
             QqpPair("How do I sell a domain?", "How do I buy a domain?", False, True)]  # fmt: skip
    prefix = build_prefix(shots)
    assert prefix.startswith(INSTRUCTION)
    assert "Question 1: How do I sell a domain?\n" in prefix  # whitespace collapsed
    assert prefix.endswith("Same question: yes\n\n" + format_item(shots[1]) + " no\n\n")
    item = format_item(QqpPair("a", "b", True, False))
    assert item == "Question 1: a\nQuestion 2: b\nSame question:"


def test_auc_counts_ties_half() -> None:
    assert roc_auc([3, 2, 1, 0], [True, True, False, False]) == 1.0
    assert roc_auc([0, 1, 2, 3], [True, True, False, False]) == 0.0
    assert roc_auc([1, 1], [True, False]) == 0.5
    assert roc_auc([0.9, 0.2, 0.5, 0.1], [True, True, False, False]) == 0.75
    with pytest.raises(ValueError):
        roc_auc([1, 2], [True, True])


def test_threshold_accepts_the_share_of_duplicates_and_counts_the_wrong() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.85, 0.65, 0.1]
    labels = [True, True, True, True, True, False, False, False]
    point = at_recall(scores, labels, 0.6)  # 3 of 5 duplicates: threshold 0.7
    assert point.threshold == 0.7
    assert (point.accepted, point.wrong) == (4, 1)
    assert point.precision == pytest.approx(0.75)
    top = at_recall(scores, labels, 0.15)  # at least one duplicate
    assert (top.threshold, top.accepted, top.wrong) == (0.9, 1, 0)
    assert top.precision == 1.0

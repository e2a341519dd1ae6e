"""The hard-negative generator: meaning-changing and meaning-keeping edits by kind, seeded."""

from __future__ import annotations

import pytest

from services.cache.verifiers.perturb import Edit, changes, keeps, perturb
from services.cache.verifiers.perturb_tables import KINDS


def changed(text: str, kind: str) -> set[str]:
    return {e.text for e in changes(text) if e.kind == kind}


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("Book a table for 8 pm", "time", "Book a table for 8 am"),
        ("Is the bank open on Monday?", "date", "Is the bank open on Friday?"),
        ("How far is 5 km?", "unit", "How far is 5 miles?"),
        ("What is the capital of France?", "entity", "What is the capital of Spain?"),
        ("Move files from my phone to my laptop", "direction",
         "Move files from my laptop to my phone"),
        ("Is Python better than Java?", "direction", "Is Java better than Python?"),
        ("What is the biggest planet?", "comparative", "What is the smallest planet?"),
        ("Delete all my emails", "quantifier", "Delete some my emails"),
        ("What should I eat before a run?", "scope", "What should I eat after a run?"),
        ("Which vitamins should I take while pregnant?", "negation",
         "Which vitamins shouldn't I take while pregnant?"),
        ("How can I turn the VPN on?", "negation", "How can I turn the VPN off?"),
        ("Why is my card not working?", "negation", "Why is my card working?"),
    ],
)  # fmt: skip
def test_changes_swap_the_word_that_matters(text: str, kind: str, expected: str) -> None:
    assert expected in changed(text, kind)


def test_no_swap_to_a_word_the_question_already_has() -> None:
    # "dollars -> euros" would give "Convert 100 euros to euros": nonsense, not a look-alike.
    units = changed("Convert 100 dollars to euros", "unit")
    assert units and "Convert 100 euros to euros" not in units


def test_numbers_change_to_another_number_and_years_count_as_dates() -> None:
    numbers = changed("Set a timer for 10 minutes", "number")
    assert numbers and all("10 minutes" not in t and "minutes" in t for t in numbers)
    assert changed("Who won the World Cup in 2014?", "date")
    assert changed("Call me at 8:30", "time") and "Call me at 8:30" not in changed(
        "Call me at 8:30", "time"
    )


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("Book a table for 8 pm", "time", "Book a table for 8 p.m."),
        ("I need 3 tickets", "number", "I need three tickets"),
        ("How do I get a visa for the US?", "entity", "How do I get a visa for the United States?"),
        ("I do not want a refund", "negation", "I don't want a refund"),
        ("Flights from Paris to Rome", "direction", "Flights to Rome from Paris"),
    ],
)  # fmt: skip
def test_keeps_reword_without_changing_the_meaning(text: str, kind: str, expected: str) -> None:
    found = {e.text for e in keeps(text) if e.kind == kind}
    assert expected in found
    assert all(e.keeps_meaning for e in keeps(text))


def test_perturb_is_reproducible_and_seed_dependent() -> None:
    text = "I want to transfer 100 dollars from my savings to checking before Monday at 8 pm"
    first = perturb(text, 3)
    assert first == perturb(text, 3)
    assert {e.kind for e in first} >= {"number", "unit", "direction", "scope", "date", "time"}
    assert any(perturb(text, seed) != first for seed in range(4, 12))


def test_perturb_gives_one_edit_of_each_label_per_kind_found() -> None:
    edits = perturb("Is Python better than Java for 3 people on Monday?", 0)
    for kind in {e.kind for e in edits}:
        assert kind in KINDS
        of_kind = [e for e in edits if e.kind == kind]
        assert sum(not e.keeps_meaning for e in of_kind) == 1
        assert sum(e.keeps_meaning for e in of_kind) <= 1
    assert all(isinstance(e, Edit) and e.text for e in edits)


def test_a_question_without_any_kind_gives_nothing() -> None:
    assert perturb("hello there", 0) == []

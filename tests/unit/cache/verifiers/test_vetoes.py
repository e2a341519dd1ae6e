"""The vetoes: a word that decides the answer, changed, rejects; the same words respelled or
reordered without changing roles do not."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.cache.verifiers.vetoes import Reading, normalise, vetoes

TEMPLATES = (
    "Book a table for {} people at the Italian place",
    "How much is {} dollars in euros?",
    "Set a timer for {} minutes",
    "What was the population of Paris in {}?",
    "Is {} a prime number?",
)
VOCABULARY = (
    "how do I the a my card to from reset password flight Paris at pm am not what is "
    "best cheapest all some before after on off 3 three 2024 km miles Monday ?"
)
WORDS = st.sampled_from(VOCABULARY.split(" "))


@given(st.lists(WORDS, min_size=1, max_size=12).map(" ".join))
def test_a_question_is_never_vetoed_against_itself(question: str) -> None:
    assert vetoes(question, question) == ()
    assert vetoes(question, f"  {question} ") == ()


@given(st.sampled_from(TEMPLATES), st.integers(0, 100_000), st.integers(0, 100_000))
def test_changing_one_number_is_always_vetoed(template: str, a: int, b: int) -> None:
    if a != b:
        assert vetoes(template.format(a), template.format(b))


@pytest.mark.parametrize(
    ("asked", "stored", "check"),
    [
        ("Wake me at 7 am", "Wake me at 7 pm", "time"),
        ("Wake me at 7 in the morning", "Wake me at 7 in the evening", "time"),
        ("Call me at 6", "Call me at 6 pm", "time"),
        ("How long is a 3 hour layover?", "How long is a 3 minute layover?", "duration"),
        ("What is the fastest way to the airport?", "What is the cheapest way to the airport?",
         "comparative"),
        ("Do all banks charge fees?", "Do any banks charge fees?", "quantifier"),
        ("What should I eat before a workout?", "What should I eat during a workout?", "scope"),
        ("Why was my card accepted?", "Why was my card declined?", "antonym"),
        ("Is it legal to fly drones here?", "Is it illegal to fly drones here?",
         "prefix_negation"),
        ("Turn the lights on", "Turn the lights off", "particle"),
        ("Trains from Lyon to Nice", "Trains from Nice to Lyon", "roles_reversed"),
        ("Can I ship to Peru?", "Can I ship from Peru?", "roles_reversed"),
        ("Did Ann call Bob?", "Did Bob call Ann?", "order"),
        ("Remind me to call mom", "Remind me to call dad", "family"),
        ("What is 6 times 7?", "What is 6 plus 7?", "operation"),
        ("How many km is 10 miles?", "How many miles is 10 km?", "unit"),
        ("How much is 10 yen in pesos?", "How much is 10 pesos in yen?", "order"),
    ],
)  # fmt: skip
def test_a_changed_deciding_word_is_vetoed(asked: str, stored: str, check: str) -> None:
    assert check in vetoes(asked, stored)


@pytest.mark.parametrize(
    ("asked", "stored"),
    [
        ("Wake me at 7 pm", "Wake me at 7 p.m."),
        ("Wake me at 7pm", "wake me at 7 PM"),
        ("Remind me at noon", "Remind me at 12 pm"),
        ("Set three alarms", "Set 3 alarms"),
        ("Convert 5 km to miles", "How many miles is 5 kilometres?"),
        ("What is on my calendar for Wed?", "What is on my calendar for Wednesday?"),
        ("What is on tomorrow?", "What's on the next day?"),
        ("Cheapest way to Rome", "Least expensive way to Rome"),
        ("Files to my laptop from my phone", "Files from my phone to my laptop"),
        ("Vitamins to take while pregnant", "Vitamins to take during pregnancy"),
        ("Log out of every device", "Sign me out of all devices"),
        ("Weather in the US", "Weather in the United States"),
    ],
)
def test_a_respelled_paraphrase_is_not_vetoed(asked: str, stored: str) -> None:
    assert vetoes(asked, stored) == ()


def test_am_the_verb_is_no_time() -> None:
    assert Reading("I am late for work").categories["time"] == frozenset()
    assert Reading("Meet at 9 am").categories["time"] == {"am"}


def test_normalise_keeps_ordinary_words_that_look_like_abbreviations() -> None:
    assert normalise("the sun sat on the wed") == "the sun sat on the wed"
    assert normalise("See you Sun at 5 p.m.") == "See you sunday at 5 pm"

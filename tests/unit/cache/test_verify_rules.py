"""The rule verifier and the text signals behind it: each check rejects its look-alike case,
true paraphrases pass."""

from __future__ import annotations

import pytest

from services.cache.verifiers import VERIFIERS, RuleVerifier, build_verifier
from services.cache.verifiers.features import CHECKS, mismatches
from services.cache.verifiers.signals_cache import SignalsCache
from services.cache.verifiers.text import Signals
from services.cache.verify import AcceptAll, Pair

NS = "namespace"
# A similarity above every threshold: the rules must decide on the text alone.
HIGH = 0.97

LOOK_ALIKES = [
    ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?", "negation"),
    ("Why can't I log in to my account?", "Why can I log in to my account?", "negation"),
    (
        "What is the best programming language?",
        "What is the worst programming language?",
        "opposite",
    ),
    ("How do I buy bitcoin?", "How do I sell bitcoin?", "opposite"),
    ("Misconceptions boys have about girls?", "Misconceptions girls have about boys?", "role"),
    ("Is a cat bigger than a dog?", "Is a dog bigger than a cat?", "role"),
    ("What is 15% of 80?", "What is 20% of 80?", "number"),
    ("How many calories are in two eggs?", "How many calories are in 3 eggs?", "number"),
    ("What is the capital of France?", "What was the capital of France in 1700?", "date"),
    ("Who won the World Cup in 2014?", "Who won the World Cup in 2018?", "date"),
    (
        "What will the weather be like on Monday?",
        "What will the weather be like on Friday?",
        "date",
    ),
    ("How many km is a marathon?", "How many miles is a marathon?", "unit"),
    ("Convert 30 °C to °F", "Convert 30 °F to °C", "unit"),
    ("Best phone under $500?", "Best phone under €500?", "unit"),
    ("What is the capital of France?", "What is the capital of Spain?", "entity"),
    ("Is Python faster than Java?", "Is Python faster than Go?", "entity"),
    ('What does "装逼" mean?', 'What does "无语" mean?', "entity"),
    ("When was Albert Einstein born?", "Where was Albert Einstein born?", "answer_type"),
]

PARAPHRASES = [
    ("What is the capital of France?", "What's the capital city of France?"),
    ("What is the capital of France?", "Which city is the capital of France?"),
    ("How do I learn Python?", "What is the best way to learn Python?"),
    ("How can I lose weight in 30 days?", "How do I lose weight in thirty days?"),
    ("Is it safe to eat raw eggs?", "Are raw eggs safe to eat?"),
    ("I still haven't received my new card", "My new card has not arrived yet"),
    ("how do i reset my password", "How do I reset my password?"),
    ("Cheap flights from London to Paris", "Cheap flights to Paris from London"),
    ("How do I convert my internship into a job?", "Best way to convert my internship into a job?"),
    ("How far is it from London to Paris in km?", "What is the distance from London to Paris?"),
    (
        "What does Donald Trump think about climate change?",
        "what does donald trump think of climate change",
    ),
]


@pytest.mark.parametrize(("query", "candidate", "reason"), LOOK_ALIKES)
def test_each_check_rejects_its_look_alike(query, candidate, reason):
    verdict = RuleVerifier().verify(Pair(query, candidate, HIGH, NS))
    assert not verdict.accepted
    assert verdict.reason == reason
    # Symmetric: the stored and the new question can be either way round.
    assert RuleVerifier().verify(Pair(candidate, query, HIGH, NS)).reason == reason


@pytest.mark.parametrize(("query", "candidate"), PARAPHRASES)
def test_paraphrases_pass(query, candidate):
    assert mismatches(Signals(query), Signals(candidate)) == ()
    assert RuleVerifier().verify(Pair(query, candidate, HIGH, NS)).accepted


def test_identical_text_is_accepted_whatever_the_checks():
    assert RuleVerifier().verify(Pair("Is it not safe?", "Is it not safe?", 1.0, NS)).accepted


@pytest.mark.parametrize(("query", "candidate", "reason"), LOOK_ALIKES)
def test_a_disabled_check_lets_its_case_through(query, candidate, reason):
    others = [check for check in CHECKS if check != reason]
    assert RuleVerifier(others).verify(Pair(query, candidate, HIGH, NS)).accepted


def test_unknown_check_is_refused():
    with pytest.raises(ValueError, match="spelling"):
        RuleVerifier(["negation", "spelling"])


def test_double_negation_reads_as_positive():
    assert not Signals("Is it not true that it never rains?").negated
    assert Signals("Isn't it raining?").negated
    assert Signals("why dont cats like water").negated


def test_numbers_are_normalised():
    assert Signals("It costs 1,000 dollars").numbers == Signals("It costs 1000 dollars").numbers
    assert Signals("in two days").numbers == Signals("in 2 days").numbers
    assert Signals("the 3rd step").numbers == Signals("step 3").numbers
    assert Signals("What is 15% of 80?").numbers == {"15%", "80"}


def test_years_are_dates_not_numbers():
    signals = Signals("Who won the election in 2016?")
    assert signals.dates == {"2016"}
    assert signals.numbers == frozenset()


def test_may_the_verb_is_not_a_date():
    assert Signals("May I pay with a card?").dates == frozenset()


def test_unit_on_one_side_only_is_rewording_not_a_mismatch():
    assert "unit" not in mismatches(Signals("How far is Paris?"), Signals("How many km to Paris?"))


def test_sentence_initial_capitals_are_not_entities():
    assert Signals("Where can I buy shoes?").entities == frozenset()
    assert Signals("Where can I buy shoes in Paris? Nike ones.").entities == {"paris"}
    assert Signals("Shoes. Where in Paris on Monday?").entities == {"paris"}
    assert Signals("how good is the iPhone").entities == {"iphone"}


def test_signals_cache_is_bounded_and_reuses_parsed_text():
    cache = SignalsCache(size=2)
    first = cache("a")
    assert cache("a") is first
    cache("b")
    cache("c")  # evicts "a", the least recently used
    assert cache("a") is not first


def test_build_verifier_knows_every_name():
    assert isinstance(build_verifier("none"), AcceptAll)
    assert isinstance(build_verifier("rules"), RuleVerifier)
    assert set(VERIFIERS) == {"none", "rules", "learned", "crossenc", "guarded", "vetoes", "banded"}
    with pytest.raises(ValueError, match="unknown verifier"):
        build_verifier("cross-encoder")

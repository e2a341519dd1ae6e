"""The vetoes' speed-ups give the verdicts they gave before: the three shortcuts (one search
before the 46 rewrites, the categories read by looking the question's phrases up, a cheap
test before the substitution matcher) against the code they replaced, kept below as it was."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from difflib import SequenceMatcher
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.cache.verifiers import vetoes as v
from services.cache.verifiers.text import STOPWORDS

PAIRS = Path(__file__).parents[4] / "benchmarks" / "data" / "lookalike" / "pairs.jsonl"
# Spellings every rewrite looks for, mixed with plain question words, so that generated texts
# hit the rewrites (alone and chained: "8a.m." -> "8am" -> "8 am") as often as they miss.
TRICKY = (
    "a.m. p.m. a.m p.m 8am 9pm 8 am noon midday midnight this evening the next day this day "
    "today's tomorrow's prior to following till with no less expensive least expensive more "
    "expensive not ever no one a hundred a thousand miles per hour degrees celsius 30c 70 f "
    "us dollars United States United States of America US us United Kingdom New York City "
    "European Union United Nations Tue Tues. Mon Wed Thu Thurs Fri Sat Sun Sept Sep. Jan Feb Oct "
    "Nov Dec mon sun sat m\u0131dnight t\u0131ll TODAY\u2019s Ünited dégrees celsius"
)
PLAIN = (
    "how do I the a my card to from reset password flight Paris at is what best cheapest all "
    "some before after on off 3 three 2024 km miles Monday ? , mom mother send request in out"
)
WORDS = st.sampled_from([*TRICKY.split(" "), *PLAIN.split(" ")])
TEXTS = st.lists(WORDS, min_size=1, max_size=14).map(" ".join)


def normalise_before(text: str) -> str:
    for pattern, replacement in v._COMPILED:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def categories_before(reading: v.Reading) -> Mapping[str, frozenset[str]]:
    words = reading.words
    phrases = set(words) | {f"{a} {b}" for a, b in itertools.pairwise(words)}
    found = {
        name: frozenset(value for w, value in table.items() if w in phrases and w != "am")
        for name, table in v._CATEGORIES.items()
    }
    if any(w == "am" and i and words[i - 1] in v._BEFORE_AM for i, w in enumerate(words)):
        found["time"] = found["time"] | {"am"}
    return MappingProxyType(found)


def substituted_before(a: v.Reading, b: v.Reading) -> bool:
    ops = [
        o
        for o in SequenceMatcher(a=a.words, b=b.words, autojunk=False).get_opcodes()
        if o[0] != "equal"
    ]
    if len(ops) != 1 or ops[0][0] != "replace":
        return False
    _, i1, i2, j1, j2 = ops[0]
    old, new = a.words[i1:i2], b.words[j1:j2]
    if len(old) != 1 or len(new) != 1 or old[0] in STOPWORDS or new[0] in STOPWORDS:
        return False
    return not v._equivalent(old[0], new[0])


def vetoes_before(asked: str, stored: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    with monkeypatch.context() as patch:
        patch.setattr(v, "normalise", normalise_before)
        patch.setattr(v, "_substituted", substituted_before)
        patch.setattr(v.Reading, "categories", property(categories_before))
        return v.vetoes(asked, stored)


def recorded_pairs() -> Iterator[tuple[str, str]]:
    for line in PAIRS.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        yield row["asked"], row["stored"]


def test_every_recorded_look_alike_and_paraphrase_gets_the_verdict_it_had(monkeypatch):
    pairs = list(recorded_pairs())
    assert len(pairs) > 800
    for asked, stored in pairs:
        assert v.normalise(asked) == normalise_before(asked)
        assert v.vetoes(asked, stored) == vetoes_before(asked, stored, monkeypatch), asked


@settings(max_examples=400, deadline=None)
@given(TEXTS)
def test_normalise_and_the_categories_read_as_before(text):
    assert v.normalise(text) == normalise_before(text)
    reading = v.Reading(text)
    assert reading.categories == categories_before(v.Reading(text))


@settings(max_examples=400, deadline=None)
@given(TEXTS, st.data())
def test_a_pair_one_word_apart_or_more_gets_the_verdict_it_had(text, data):
    words = text.split(" ")
    edited = list(words)
    for _ in range(data.draw(st.integers(min_value=0, max_value=2))):
        edited[data.draw(st.integers(0, len(words) - 1))] = data.draw(WORDS)
    stored = " ".join(edited)
    a, b = v.Reading(text), v.Reading(stored)
    assert v._substituted(a, b) == substituted_before(a, b)
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert v.vetoes(text, stored) == vetoes_before(text, stored, monkeypatch)

"""Pair checks and the feature vector the learned verifier scores.

The checks (`mismatches`) are the hard rules: each names one way two look-alike questions ask for
different answers. The features (`pair_features`) are the same signals as numbers, plus overlap
measures, for the logistic model in learned.py. Both take `Signals`, so a verifier that caches
them per text does the parsing once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

from services.cache.verifiers.text import (
    Signals,
    entity_extra,
    entity_substituted,
    opposite_swapped,
    roles_swapped,
)

# The checks, in the order the rule verifier applies them; the names are the Verdict reasons.
CHECKS = ("negation", "opposite", "role", "number", "date", "unit", "entity", "answer_type")


def mismatches(a: Signals, b: Signals) -> tuple[str, ...]:
    """Names of the checks that say `a` and `b` need different answers."""
    found = []
    if a.negated != b.negated:
        found.append("negation")
    if opposite_swapped(a, b) or opposite_swapped(b, a):
        found.append("opposite")
    if roles_swapped(a, b):
        found.append("role")
    # Any difference counts, including a number on one side only: "... in 1700?" narrows the
    # question, and paraphrases rarely drop a number that was there.
    if a.numbers != b.numbers:
        found.append("number")
    if a.dates != b.dates:
        found.append("date")
    # A unit on one side only is usually rewording ("how far" / "how many miles"), so only
    # two different non-empty unit sequences count.
    if a.units and b.units and a.units != b.units:
        found.append("unit")
    if entity_substituted(a, b):
        found.append("entity")
    if a.answer_type and b.answer_type and a.answer_type != b.answer_type:
        found.append("answer_type")
    return tuple(found)


FEATURES = (
    "cosine",
    "cosine_gap",
    "jaccard",
    "containment_min",
    "containment_max",
    "only_in_one",
    "char_jaccard",
    "length_ratio",
    "short_length",
    "negation",
    "opposite",
    "role",
    "number",
    "number_one_sided",
    "date",
    "unit",
    "entity",
    "entity_extra",
    "answer_type",
    "answer_type_one_sided",
)


def pair_features(a: Signals, b: Signals, similarity: float) -> Mapping[str, float]:
    """The named features of a (query, candidate) pair; keys are FEATURES."""
    shared = len(a.content & b.content)
    union = len(a.content | b.content)
    smaller = min(len(a.content), len(b.content))
    larger = max(len(a.content), len(b.content))
    lengths = sorted((len(a.tokens), len(b.tokens)))
    flags = set(mismatches(a, b))
    one_sided_numbers = bool(a.numbers) != bool(b.numbers)
    values = {
        "cosine": similarity,
        # Squared distance from 1: lets a linear model bend, paraphrases bunch up near 1.
        "cosine_gap": (1.0 - similarity) ** 2,
        "jaccard": shared / union if union else 1.0,
        "containment_min": shared / larger if larger else 1.0,
        "containment_max": shared / smaller if smaller else 1.0,
        "only_in_one": math.log1p(union - shared),
        "char_jaccard": _char_jaccard(a.text, b.text),
        "length_ratio": lengths[0] / lengths[1] if lengths[1] else 1.0,
        "short_length": math.log1p(lengths[0]),
        "number_one_sided": float(one_sided_numbers),
        "entity_extra": math.log1p(entity_extra(a, b)),
        "answer_type_one_sided": float(bool(a.answer_type) != bool(b.answer_type)),
    }
    values.update({check: float(check in flags) for check in CHECKS})
    return MappingProxyType(values)


def _char_jaccard(a: str, b: str) -> float:
    """Jaccard of character trigrams: robust to typos and spelling variants."""
    grams_a = _trigrams(a)
    grams_b = _trigrams(b)
    union = len(grams_a | grams_b)
    return len(grams_a & grams_b) / union if union else 1.0


def _trigrams(text: str) -> frozenset[str]:
    squashed = " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())
    return frozenset(squashed[i : i + 3] for i in range(max(1, len(squashed) - 2)))

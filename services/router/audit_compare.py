"""Is a served cache hit the answer the models would give now? A pure comparison.

A sampled audit (cache_audit.py) asks the tier cascade again and compares its fresh answer
with the one the cache served. Only agreement or disagreement that says something about the
*match* becomes a verdict:

- JSON requests compare the parsed documents;
- short answers (labels, numbers, yes/no, one-line facts) compare their normalised text;
- anything else is undecided: two free-text answers worded differently can both be right, so
  a difference in wording is no evidence that the hit was wrong.

A wrong verdict removes the entry and lowers the namespace's trust in similar matches, so the
comparison leans to "undecided" whenever it is unsure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum

from shared.chat import ResponseFormat

# Answers of at most this many words are compared as text: labels, numbers, yes/no and
# one-line facts ("The capital of France is Paris."). Longer ones vary in wording too much.
SHORT_ANSWER_MAX_WORDS = 8
# Punctuation stripped around each word. Signs and units ("-1", "50%", "$3") are kept: they
# change what a short answer says.
_SURROUNDING = ".,;:!?\"'`*()[]{}<>\u2018\u2019\u201c\u201d\u2026"
_FENCED = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)


class HitVerdict(StrEnum):
    """A verdict on a served hit, as ReportHit takes it."""

    RIGHT = "right"
    WRONG = "wrong"


@dataclass(frozen=True)
class Comparison:
    """The verdict, or None when the answers say nothing either way (undecided)."""

    verdict: HitVerdict | None
    reason: str


def compare(served: str, fresh: str, response_format: ResponseFormat) -> Comparison:
    """Compares the served (cached) answer with the fresh one for the same request."""
    if response_format.wants_json:
        return _compare_json(served, fresh)
    mine, theirs = words(served), words(fresh)
    if mine == theirs:
        # Identical text agrees whatever its length.
        return Comparison(HitVerdict.RIGHT, "the answers are the same text")
    if max(len(mine), len(theirs)) > SHORT_ANSWER_MAX_WORDS:
        return Comparison(None, "free-text answers differ in wording")
    if not mine or not theirs:
        return Comparison(None, "an answer is empty")
    shorter, longer = sorted((mine, theirs), key=len)
    if _contains(longer, shorter):
        # "Paris" and "The capital of France is Paris" agree; only the wording differs.
        return Comparison(None, "one short answer contains the other")
    return Comparison(HitVerdict.WRONG, "the short answers differ")


def words(text: str) -> tuple[str, ...]:
    """The text casefolded, split on whitespace, each word stripped of surrounding punctuation."""
    stripped = (word.strip(_SURROUNDING) for word in text.casefold().split())
    return tuple(word for word in stripped if word)


def _contains(longer: tuple[str, ...], shorter: tuple[str, ...]) -> bool:
    size = len(shorter)
    return any(longer[i : i + size] == shorter for i in range(len(longer) - size + 1))


def _compare_json(served: str, fresh: str) -> Comparison:
    try:
        mine = json.loads(_unfence(served))
        theirs = json.loads(_unfence(fresh))
    except json.JSONDecodeError:
        # The last tier's answer is accepted even when it fails the json gate; such an answer
        # says nothing about the hit.
        return Comparison(None, "an answer is not valid JSON")
    if same_json(mine, theirs):
        return Comparison(HitVerdict.RIGHT, "the JSON documents are equal")
    return Comparison(HitVerdict.WRONG, "the JSON documents differ")


def _unfence(text: str) -> str:
    """Models often wrap JSON in a ```json fence; the JSON inside is what counts."""
    match = _FENCED.fullmatch(text.strip())
    return match.group(1) if match else text


def same_json(left: object, right: object) -> bool:
    """Equality of parsed JSON values, where true is not 1 (Python's == says it is), and 1
    equals 1.0 (JSON has one number type)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same_json(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(
            same_json(a, b) for a, b in zip(left, right, strict=True)
        )
    if isinstance(left, dict | list) or isinstance(right, dict | list):
        return False
    return left == right

"""Gates that read what the answer says, not only its shape.

A cascade's edge over a prompt-only router is that it has seen the cheap tier's answer. These
checks read it:
- `final_answer`: the answer states a final answer in a recognisable form (`#### 42`, `The
  answer is 42`, `\\boxed{42}`, or the tenant's own pattern), optionally of a given format.
- `arithmetic`: every sum the answer writes out recomputes (arithmetic.py).
- `self_consistency`: when a tier returns several choices, their final answers agree.
- `answer_score`: a logistic model over the answer signals below, with weights fitted offline
  on labelled traffic and stated in the policy (the FrugalGPT-style scorer, without embeddings).

Where they transfer: the final-answer and arithmetic checks fit any traffic whose answers are
worked solutions (maths, finance, unit conversions); on open prose they find nothing to check
and pass (final_answer should then not be listed). The weights of `answer_score` are fitted on
one task's labels and carry that task's habits (e.g. how often its prompts' numbers are used);
refit them per class of traffic.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.router.arithmetic import check_arithmetic, normalise

_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?"
# Explicit final-answer markers, in the forms models are prompted or trained to use. A bare last
# number is not one: the point is that the answer commits to a result.
DEFAULT_FINAL_PATTERNS = (
    r"####\s*(" + _NUMBER + r"|[^\n]+?)\s*$",
    r"\\boxed\{([^{}]+)\}",
    r"(?:final answer|the answer is|answer:)\s*(?:is\s*)?[:=]?\s*\**\s*(" + _NUMBER + r")",
)
# Words with which an answer doubts itself or bends the question ("however, since you can't
# have half a bolt ..."): each is weak evidence, several are strong.
HEDGES = re.compile(
    r"\b(?:however|assum\w*|approximately|cannot|can't|not possible|unclear|round\w*|"
    r"actually|wait|mistake|but since|it seems|i think|likely|perhaps)\b",
    re.IGNORECASE,
)
_HEDGE_CAP = 3
SIGNALS = (
    "final_answer",
    "final_format",
    "arithmetic_checked",
    "arithmetic_wrong",
    "hedges",
    "log_length",
    "prompt_numbers_missing",
)
ANSWER_KEYS = frozenset(
    {
        "final_answer_pattern",
        "final_answer_format",
        "min_agreement",
        "answer_weights",
        "min_answer_score",
    }
)


@dataclass(frozen=True)
class AnswerSettings:
    # A regular expression with one group, the final answer; "" = DEFAULT_FINAL_PATTERNS.
    final_answer_pattern: str = ""
    # A regular expression the extracted final answer must match whole, e.g. "-?\d+".
    final_answer_format: str = ""
    # `self_consistency`: the share of choices that must give the majority's final answer.
    min_agreement: float = 0.5
    # `answer_score`: a weight per signal (SIGNALS) plus "bias"; P(right) = sigmoid(w . s).
    weights: tuple[tuple[str, float], ...] = ()
    min_answer_score: float = 0.5

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> AnswerSettings:
        pattern = str(raw.get("final_answer_pattern", ""))
        answer_format = str(raw.get("final_answer_format", ""))
        if pattern and _compiled(pattern).groups != 1:
            raise ValueError("final_answer_pattern needs exactly one group (the answer)")
        _compiled(answer_format)
        agreement = float(raw.get("min_agreement", 0.5))
        min_score = float(raw.get("min_answer_score", 0.5))
        if not (0.0 < agreement <= 1.0 and 0.0 <= min_score <= 1.0):
            raise ValueError("min_agreement must be in (0, 1] and min_answer_score in [0, 1]")
        weights = raw.get("answer_weights") or {}
        if not isinstance(weights, Mapping):
            raise ValueError("answer_weights must map signal names to numbers")
        unknown = sorted(set(weights) - {"bias", *SIGNALS})
        if unknown:
            raise ValueError(f"answer_weights: unknown signals {unknown}; known: {list(SIGNALS)}")
        pairs = tuple((str(k), float(v)) for k, v in weights.items())
        return cls(pattern, answer_format, agreement, pairs, min_score)


def _compiled(expression: str) -> re.Pattern[str]:
    try:
        return re.compile(expression)
    except re.error as error:
        raise ValueError(f"bad regular expression {expression!r}: {error}") from None


def final_answer(text: str, settings: AnswerSettings) -> str | None:
    """The answer's last stated final answer, stripped of `$`, commas and a trailing period."""
    patterns = (settings.final_answer_pattern,) if settings.final_answer_pattern else ()
    for pattern in patterns or DEFAULT_FINAL_PATTERNS:
        found = list(re.finditer(pattern, text.strip(), re.IGNORECASE | re.MULTILINE))
        if found:
            return canonical(found[-1].group(1))
    return None


def canonical(answer: str) -> str:
    """One spelling per value, so `$1,200.00` and `1200` agree."""
    plain = answer.strip().rstrip(".").replace("$", "").replace(",", "").strip("* ")
    try:
        number = float(plain)
    except ValueError:
        return plain.lower()
    return str(int(number)) if number.is_integer() else repr(number)


def final_answer_problem(text: str, settings: AnswerSettings) -> str | None:
    """Why the answer fails the final-answer check, or None when it passes."""
    found = final_answer(text, settings)
    if found is None:
        return "the answer states no final answer"
    if settings.final_answer_format and not re.fullmatch(settings.final_answer_format, found):
        return f"final answer {found!r} does not match {settings.final_answer_format!r}"
    return None


def arithmetic_problem(text: str) -> str | None:
    check = check_arithmetic(text)
    if not check.wrong:
        return None
    return f"{len(check.wrong)} of {check.checked} stated sums are wrong, e.g. {check.wrong[0]}"


def agreement(answers: Sequence[str], settings: AnswerSettings) -> float | None:
    """The share of answers giving the most common final answer (a choice with none counts
    against it); None with fewer than two answers, where there is nothing to compare."""
    if len(answers) < 2:
        return None
    finals = [final_answer(text, settings) for text in answers]
    counted = Counter(f for f in finals if f is not None)
    if not counted:
        return 0.0
    return counted.most_common(1)[0][1] / len(answers)


def _numbers(text: str) -> set[float]:
    return {float(n) for n in re.findall(r"\d+(?:\.\d+)?", normalise(text))}


def signals(prompt: str, text: str, settings: AnswerSettings) -> dict[str, float]:
    """The answer's signals, each a number in about [0, 1] (log_length aside)."""
    found = final_answer(text, settings)
    check = check_arithmetic(text)
    asked = _numbers(prompt)
    used = _numbers(text)
    return {
        "final_answer": float(found is not None),
        "final_format": float(
            found is not None
            and bool(re.fullmatch(settings.final_answer_format or r"-?\d+", found))
        ),
        "arithmetic_checked": float(check.checked > 0),
        "arithmetic_wrong": float(bool(check.wrong)),
        "hedges": min(len(HEDGES.findall(text)), _HEDGE_CAP) / _HEDGE_CAP,
        "log_length": math.log1p(len(text.strip())),
        "prompt_numbers_missing": len(asked - used) / len(asked) if asked else 0.0,
    }


def answer_score(values: Mapping[str, float], settings: AnswerSettings) -> float:
    """P(the answer is right) under the policy's weights."""
    weights = dict(settings.weights)
    logit = weights.get("bias", 0.0) + sum(w * values.get(k, 0.0) for k, w in weights.items())
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit))))

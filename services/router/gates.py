"""Quality gates: cheap checks that decide whether a tier's answer is good enough.

A gate never calls a model; each looks at the answer the tier produced. Failing any gate
escalates the request to the next tier, so gates trade a little precision for a lot of money:
a false rejection costs one more call, a false acceptance costs answer quality.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.chat import Finish

# Phrasings with which chat models decline; matched at the start of the answer, where refusals
# sit, so an answer that merely quotes one of these later on still passes.
DEFAULT_REFUSAL_PATTERNS = (
    r"i'?m sorry,? but (?:i|as an ai)",
    r"i (?:cannot|can't|can not|am unable to|won't) (?:help|assist|answer|provide|comply|do that)",
    r"as an ai(?: language model)?,? i (?:cannot|can't|don't|am not able)",
    r"i'?m (?:not able|unable) to (?:help|assist|answer|provide)",
    r"sorry,? (?:but )?i (?:cannot|can't)",
)
_REFUSAL_WINDOW_CHARS = 160
# An answer that stops on one of these was cut off, whatever finish_reason the provider sent.
_DANGLING_WORDS = frozenset(
    {"a", "an", "and", "the", "of", "to", "then", "with", "for", "in", "on", "is", "are"}
    | {"but", "or", "that", "which", "because"}
)


@dataclass(frozen=True)
class GateSettings:
    min_length_chars: int = 1
    refusal_patterns: tuple[str, ...] = DEFAULT_REFUSAL_PATTERNS

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> GateSettings:
        unknown = set(raw) - {"min_length_chars", "refusal_patterns"}
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        min_length = int(raw.get("min_length_chars", 1))
        if min_length < 0:
            raise ValueError("min_length_chars must not be negative")
        patterns = tuple(raw.get("refusal_patterns", DEFAULT_REFUSAL_PATTERNS))
        for pattern in patterns:
            re.compile(pattern)
        return cls(min_length, patterns)


@dataclass(frozen=True)
class GateInput:
    content: str
    finish: Finish


@dataclass(frozen=True)
class Verdict:
    passed: bool
    gate: str = ""
    reason: str = ""


PASS = Verdict(True)
Gate = Callable[[GateInput, GateSettings], Verdict]


def finish_reason_gate(answer: GateInput, _: GateSettings) -> Verdict:
    if answer.finish in (Finish.STOP, Finish.TOOL_CALLS):
        return PASS
    return Verdict(False, "finish_reason", f"finish_reason was {answer.finish.value!r}")


def min_length_gate(answer: GateInput, settings: GateSettings) -> Verdict:
    length = len(answer.content.strip())
    if length >= settings.min_length_chars:
        return PASS
    return Verdict(False, "min_length", f"{length} chars < {settings.min_length_chars}")


def truncation_gate(answer: GateInput, _: GateSettings) -> Verdict:
    """Catches answers that were cut off even when the provider reported `stop`."""
    text = answer.content.rstrip()
    if text.count("```") % 2:
        return Verdict(False, "truncation", "unterminated code block")
    opened = sum(text.count(c) for c in "([{")
    closed = sum(text.count(c) for c in ")]}")
    if opened - closed > 2:
        return Verdict(False, "truncation", "unbalanced brackets")
    last_word = text.rsplit(maxsplit=1)[-1].lower() if text else ""
    if len(text) > 40 and (text.endswith((",", ":", ";", "-")) or last_word in _DANGLING_WORDS):
        return Verdict(False, "truncation", "answer ends mid-sentence")
    return PASS


def refusal_gate(answer: GateInput, settings: GateSettings) -> Verdict:
    opening = answer.content.strip()[:_REFUSAL_WINDOW_CHARS].lower().replace("\u2019", "'")
    for pattern in settings.refusal_patterns:
        if re.search(pattern, opening):
            return Verdict(False, "refusal", "the answer declines the request")
    return PASS


GATES: Mapping[str, Gate] = {
    "finish_reason": finish_reason_gate,
    "min_length": min_length_gate,
    "truncation": truncation_gate,
    "refusal": refusal_gate,
}
GATE_NAMES = frozenset(GATES)


def evaluate(gate_names: tuple[str, ...], answer: GateInput, settings: GateSettings) -> Verdict:
    """Runs the named gates in order and returns the first failure, or a pass."""
    for name in gate_names:
        verdict = GATES[name](answer, settings)
        if not verdict.passed:
            return verdict
    return PASS

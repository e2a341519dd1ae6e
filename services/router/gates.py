"""Quality gates: cheap checks that decide whether a tier's answer is good enough.

A gate never calls a model; each looks at the answer the tier produced. Failing any gate
escalates the request to the next tier, so gates trade a little precision for a lot of money:
a false rejection costs one more call, a false acceptance costs answer quality.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from services.router.answer_gates import (
    ANSWER_KEYS,
    AnswerSettings,
    arithmetic_problem,
    final_answer_problem,
)
from services.router.tool_gate import GATE as TOOL_CALL_GATE
from services.router.tool_gate import ToolCallProblem, check_tool_calls
from shared.chat import NO_TOOLS, TEXT_FORMAT, Finish, FormatKind, ResponseFormat, ToolCall, ToolSet

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
    # For the `format` gate: a regular expression the whole (stripped) answer must match,
    # e.g. "[A-D]" for a multiple-choice task.
    expected_format: str = ""
    # The answer-reading gates' settings (answer_gates.py).
    answer: AnswerSettings = field(default_factory=AnswerSettings)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> GateSettings:
        unknown = (
            set(raw) - {"min_length_chars", "refusal_patterns", "expected_format"} - ANSWER_KEYS
        )
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        min_length = int(raw.get("min_length_chars", 1))
        if min_length < 0:
            raise ValueError("min_length_chars must not be negative")
        patterns = tuple(raw.get("refusal_patterns", DEFAULT_REFUSAL_PATTERNS))
        expected = str(raw.get("expected_format", ""))
        for pattern in (*patterns, expected):
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"bad regular expression {pattern!r}: {error}") from None
        answer = AnswerSettings.from_mapping({k: v for k, v in raw.items() if k in ANSWER_KEYS})
        return cls(min_length, patterns, expected, answer)


@dataclass(frozen=True)
class LogprobSummary:
    """The answer's token log probabilities as the provider returned them, summarised."""

    mean: float
    min: float
    tokens: int


@dataclass(frozen=True)
class GateInput:
    content: str
    finish: Finish
    response_format: ResponseFormat = TEXT_FORMAT
    # None when the provider returned no logprobs.
    logprobs: LogprobSummary | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    # The tools the request offered, which the answer's calls must fit.
    tools: ToolSet = NO_TOOLS
    # The caller set max_tokens itself: an answer cut there is what it asked for.
    caller_max_tokens: bool = False

    @property
    def cut_as_asked(self) -> bool:
        """Stopped at the caller's own max_tokens: the baseline model would stop there too, so
        no gate may hold the cut against the answer."""
        return self.finish is Finish.LENGTH and self.caller_max_tokens


@dataclass(frozen=True)
class Verdict:
    passed: bool
    gate: str = ""
    reason: str = ""
    # The gate could not judge (no signal, or its model failed): it neither passes nor fails
    # the answer, and the reason says why.
    skipped: bool = False


PASS = Verdict(True)
Gate = Callable[[GateInput, GateSettings], Verdict]


def finish_reason_gate(answer: GateInput, _: GateSettings) -> Verdict:
    if answer.finish in (Finish.STOP, Finish.TOOL_CALLS) or answer.cut_as_asked:
        return PASS
    return Verdict(False, "finish_reason", f"finish_reason was {answer.finish.value!r}")


def min_length_gate(answer: GateInput, settings: GateSettings) -> Verdict:
    length = len(answer.content.strip())
    if length >= settings.min_length_chars:
        return PASS
    return Verdict(False, "min_length", f"{length} chars < {settings.min_length_chars}")


def truncation_gate(answer: GateInput, _: GateSettings) -> Verdict:
    """Catches answers that were cut off even when the provider reported `stop`."""
    if answer.cut_as_asked:
        return PASS
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


def format_gate(answer: GateInput, settings: GateSettings) -> Verdict:
    if not settings.expected_format or re.fullmatch(
        settings.expected_format, answer.content.strip(), re.DOTALL
    ):
        return PASS
    return Verdict(False, "format", f"the answer does not match {settings.expected_format!r}")


def final_answer_gate(answer: GateInput, settings: GateSettings) -> Verdict:
    if answer.cut_as_asked:
        return PASS
    problem = final_answer_problem(answer.content, settings.answer)
    return PASS if problem is None else Verdict(False, "final_answer", problem)


def arithmetic_gate(answer: GateInput, _: GateSettings) -> Verdict:
    problem = arithmetic_problem(answer.content)
    return PASS if problem is None else Verdict(False, "arithmetic", problem)


def json_gate(answer: GateInput, _: GateSettings) -> Verdict:
    """Checks JSON validity (and the schema) when the request asked for JSON."""
    if not answer.response_format.wants_json or answer.cut_as_asked:
        return PASS
    try:
        document = json.loads(_strip_fence(answer.content))
    except json.JSONDecodeError as error:
        return Verdict(False, "json", f"not valid JSON: {error.msg} at char {error.pos}")
    if answer.response_format.kind is FormatKind.JSON_OBJECT and not isinstance(document, dict):
        return Verdict(False, "json", "the answer is JSON but not an object")
    if answer.response_format.kind is FormatKind.JSON_SCHEMA:
        schema = json.loads(answer.response_format.json_schema)
        violation = jsonschema.exceptions.best_match(
            jsonschema.validators.validator_for(schema)(schema).iter_errors(document)
        )
        if violation is not None:
            where = "/".join(str(p) for p in violation.absolute_path) or "the root"
            return Verdict(False, "json", f"schema violation at {where}: {violation.message}")
    return PASS


def _strip_fence(text: str) -> str:
    """Models often wrap JSON in a ```json fence; the JSON inside is what counts."""
    match = _FENCED.fullmatch(text.strip())
    return match.group(1) if match else text


_FENCED = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)


def logprob_gate(answer: GateInput, min_mean: float | None, min_token: float | None) -> Verdict:
    """Token-logprob confidence: a low mean (or one very unlikely token) flags a guess.

    Skipped, not failed, when the provider returned no logprobs: missing data is no evidence
    that the answer is wrong, and failing would escalate every call of such a provider.
    """
    summary = answer.logprobs
    if summary is None or summary.tokens == 0:
        return Verdict(True, "logprob", "the upstream returned no logprobs", skipped=True)
    if min_mean is not None and summary.mean < min_mean:
        return Verdict(False, "logprob", f"mean token logprob {summary.mean:.3f} < {min_mean:.3f}")
    if min_token is not None and summary.min < min_token:
        return Verdict(
            False, "logprob", f"lowest token logprob {summary.min:.3f} < {min_token:.3f}"
        )
    return Verdict(
        True, "logprob", f"mean token logprob {summary.mean:.3f}, lowest {summary.min:.3f}"
    )


GATES: Mapping[str, Gate] = {
    "finish_reason": finish_reason_gate,
    "min_length": min_length_gate,
    "truncation": truncation_gate,
    "refusal": refusal_gate,
    "format": format_gate,
    "json": json_gate,
    "final_answer": final_answer_gate,
    "arithmetic": arithmetic_gate,
}
# Gates that need more than the answer's text: the learned scorer, the provider's token
# logprobs and a cheap-LLM judge; and those that read the prompt or every choice
# (answer_gates.py, code_gate.py). The cascade runs them after the rule gates pass.
LEARNED_GATES = frozenset(
    {"scorer", "logprob", "judge", "self_consistency", "answer_score", "code_tests"}
)
GATE_NAMES = frozenset(GATES) | LEARNED_GATES


def tool_call_gate(answer: GateInput) -> Verdict:
    try:
        check_tool_calls(answer.tool_calls, answer.tools)
    except ToolCallProblem as problem:
        return Verdict(False, TOOL_CALL_GATE, str(problem))
    return PASS


# Gates that read the answer's text; an answer made only of tool calls has none to read.
_TEXT_GATES = frozenset(
    {"min_length", "truncation", "refusal", "format", "json", "final_answer", "arithmetic"}
)


def evaluate(gate_names: tuple[str, ...], answer: GateInput, settings: GateSettings) -> Verdict:
    """Runs the named gates in order and returns the first failure, or a pass. A request that
    asks for JSON gets the json gate on every tier, listed or not; one that offers tools (or an
    answer that calls any) gets the tool-call gate first."""
    if answer.tools.offered or answer.tool_calls:
        verdict = tool_call_gate(answer)
        if not verdict.passed:
            return verdict
    implied = ("json",) if answer.response_format.wants_json and "json" not in gate_names else ()
    calls_only = bool(answer.tool_calls) and not answer.content.strip()
    for name in (*gate_names, *implied):
        if name in LEARNED_GATES or (calls_only and name in _TEXT_GATES):
            continue
        verdict = GATES[name](answer, settings)
        if not verdict.passed:
            return verdict
    return PASS

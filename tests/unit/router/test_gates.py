"""Quality gates: each catches its failure and passes good answers."""

import pytest

from services.router.gates import GateInput, GateSettings, evaluate
from shared.chat import Finish, FormatKind, ResponseFormat

ALL = ("finish_reason", "truncation", "refusal", "min_length")
SETTINGS = GateSettings(min_length_chars=3)


def verdict(content: str, finish: Finish = Finish.STOP):
    return evaluate(ALL, GateInput(content, finish), SETTINGS)


def test_good_answer_passes() -> None:
    assert verdict("The capital of France is Paris.").passed


@pytest.mark.parametrize(
    ("content", "finish", "gate"),
    [
        ("The answer is", Finish.LENGTH, "finish_reason"),
        ("Withheld.", Finish.CONTENT_FILTER, "finish_reason"),
        ("Here:\n```python\nprint(1)\n", Finish.STOP, "truncation"),
        (
            "The process works as follows: first we take the input and then",
            Finish.STOP,
            "truncation",
        ),
        ("I'm sorry, but I can't help with that.", Finish.STOP, "refusal"),
        ("As an AI language model, I cannot browse the web.", Finish.STOP, "refusal"),
        ("I cannot help with that request.", Finish.STOP, "refusal"),
        ("ok", Finish.STOP, "min_length"),
        ("   ", Finish.STOP, "min_length"),
    ],
)
def test_failures_name_their_gate(content: str, finish: Finish, gate: str) -> None:
    result = verdict(content, finish)
    assert not result.passed
    assert result.gate == gate
    assert result.reason


def test_refusal_quoted_later_in_the_answer_passes() -> None:
    answer = (
        "Customer support scripts often need a polite decline. " * 4
        + "For example: 'I'm sorry, but I can't help with that.'"
    )
    assert verdict(answer).passed


def test_only_configured_gates_run() -> None:
    refusal = GateInput("I'm sorry, but I can't help with that.", Finish.STOP)
    assert evaluate(("finish_reason",), refusal, SETTINGS).passed


def test_settings_reject_unknown_keys_and_bad_patterns() -> None:
    with pytest.raises(ValueError, match="unknown"):
        GateSettings.from_mapping({"min_lenght_chars": 3})
    with pytest.raises(Exception):  # noqa: B017 - re.error subclasses Exception only
        GateSettings.from_mapping({"refusal_patterns": ["("]})


SCHEMA = ResponseFormat(
    FormatKind.JSON_SCHEMA,
    '{"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}',
)


@pytest.mark.parametrize(
    ("content", "response_format", "passed", "reason"),
    [
        ('{"city": "Paris"}', ResponseFormat(FormatKind.JSON_OBJECT), True, ""),
        ('```json\n{"city": "Paris"}\n```', ResponseFormat(FormatKind.JSON_OBJECT), True, ""),
        ('{"city": "Par', ResponseFormat(FormatKind.JSON_OBJECT), False, "not valid JSON"),
        ("[1, 2]", ResponseFormat(FormatKind.JSON_OBJECT), False, "not an object"),
        ('{"city": "Paris"}', SCHEMA, True, ""),
        ('{"city": 7}', SCHEMA, False, "schema violation at city: 7 is not of type 'string'"),
        ("{}", SCHEMA, False, "'city' is a required property"),
        ("not json at all", ResponseFormat(), True, ""),
    ],
)
def test_json_gate(
    content: str, response_format: ResponseFormat, passed: bool, reason: str
) -> None:
    # Listed nowhere: asking for JSON is enough to gate on it.
    verdict = evaluate(
        ("finish_reason",), GateInput(content, Finish.STOP, response_format), SETTINGS
    )
    assert verdict.passed is passed
    assert reason in verdict.reason
    if not passed:
        assert verdict.gate == "json"


def test_format_gate_matches_the_whole_answer() -> None:
    settings = GateSettings.from_mapping({"expected_format": "[A-D]"})
    assert evaluate(("format",), GateInput(" B\n", Finish.STOP), settings).passed
    failed = evaluate(("format",), GateInput("B) because", Finish.STOP), settings)
    assert not failed.passed and failed.gate == "format"
    with pytest.raises(ValueError, match="bad regular expression"):
        GateSettings.from_mapping({"expected_format": "[A-"})


def test_learned_gates_are_skipped_by_the_rule_evaluation() -> None:
    from services.router.gates import GATE_NAMES, LEARNED_GATES

    assert LEARNED_GATES <= GATE_NAMES
    assert evaluate(("scorer", "logprob", "judge"), GateInput("", Finish.STOP), SETTINGS).passed


@pytest.mark.parametrize(
    ("summary", "floors", "passed", "skipped", "reason"),
    [
        ((-0.1, -0.9, 5), (-0.5, None), True, False, "mean token logprob -0.100"),
        ((-0.8, -0.9, 5), (-0.5, None), False, False, "-0.800 < -0.500"),
        ((-0.1, -3.0, 5), (None, -2.0), False, False, "lowest token logprob -3.000 < -2.000"),
        ((-0.1, -1.0, 5), (-0.5, -2.0), True, False, "lowest -1.000"),
        (None, (-0.5, None), True, True, "returned no logprobs"),
        ((0.0, 0.0, 0), (-0.5, None), True, True, "returned no logprobs"),
    ],
)
def test_logprob_gate(summary, floors, passed, skipped, reason) -> None:
    from services.router.gates import LogprobSummary, logprob_gate

    logprobs = None if summary is None else LogprobSummary(*summary)
    result = logprob_gate(GateInput("B", Finish.STOP, logprobs=logprobs), *floors)
    assert (result.passed, result.skipped, result.gate) == (passed, skipped, "logprob")
    assert reason in result.reason

"""Quality gates: each catches its failure and passes good answers."""

import pytest

from services.router.gates import GateInput, GateSettings, evaluate
from shared.chat import Finish

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

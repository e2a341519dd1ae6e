"""The answer-reading rule gates: final answer, arithmetic, agreement and the signal score."""

import pytest

from services.router.answer_gates import (
    AnswerSettings,
    agreement,
    answer_score,
    final_answer,
    signals,
)
from services.router.arithmetic import check_arithmetic, value_of
from services.router.gates import GateInput, GateSettings, evaluate
from shared.chat import Finish

WORKED = "She has 16 - 3 = 13 eggs.\nShe sells 9 * $2 = $<<9*2=18>>18.\n#### 18"
SLIP = "She has 16 - 3 = 13 eggs.\nShe sells 9 \\* 2 = 16 dollars.\n#### 16"


def run(gates: tuple[str, ...], text: str, **answer: object) -> str:
    settings = GateSettings(answer=AnswerSettings(**answer))  # type: ignore[arg-type]
    verdict = evaluate(gates, GateInput(text, Finish.STOP), settings)
    return "pass" if verdict.passed else f"{verdict.gate}: {verdict.reason}"


def test_a_wrong_stated_sum_fails_and_the_reason_names_it() -> None:
    assert run(("arithmetic",), WORKED) == "pass"
    assert run(("arithmetic",), SLIP) == "arithmetic: 1 of 2 stated sums are wrong, e.g. 9 * 2 = 16"


@pytest.mark.parametrize(
    ("text", "checked", "wrong"),
    [
        ("25 - (8 \\* 1) = 25 - 8 = 17", 2, 0),  # a chain: each link recomputed
        ("1,200 x 3 = 3,600 and 4 \u00d7 3 = 11", 2, 1),  # thousands commas, x and the sign
        ("17 / 3 = 5.67", 1, 0),  # rounded to the stated decimals
        ("20% of 50 = 10. It costs $5 = five dollars", 0, 0),  # no operator: prose
        ("Step 1. 2 + 2 = 5", 1, 1),  # a full stop ends the side
    ],
)
def test_arithmetic_recomputes_only_plain_sums(text: str, checked: int, wrong: int) -> None:
    result = check_arithmetic(text)
    assert (result.checked, len(result.wrong)) == (checked, wrong)


def test_sides_are_parsed_never_evaluated_as_code() -> None:
    assert value_of("__import__('os').system('true')") is None
    assert value_of("2 ** 99999") is None  # power is not one of the four operators
    assert value_of("(1 + 2) * 3") == 9.0
    assert check_arithmetic("open('f') * 2 = 2").checked == 0  # only the digits are read


def test_final_answer_forms_and_format() -> None:
    plain = AnswerSettings()
    assert final_answer("so #### $1,200", plain) == "1200"
    assert final_answer("Thus \\boxed{42}.", plain) == "42"
    assert final_answer("The answer is 7.", plain) == "7"
    assert final_answer("She makes 18 dollars.", plain) is None
    assert run(("final_answer",), "She makes 18 dollars.") == (
        "final_answer: the answer states no final answer"
    )
    assert run(("final_answer",), "#### 2.5", final_answer_format=r"-?\d+") == (
        "final_answer: final answer '2.5' does not match '-?\\\\d+'"
    )
    assert run(("final_answer",), "ANSWER=(b)", final_answer_pattern=r"ANSWER=\((\w)\)") == "pass"


def test_agreement_is_the_majority_share_and_needs_two_answers() -> None:
    plain = AnswerSettings()
    assert agreement(["#### 4", "#### 4.0", "#### 5"], plain) == pytest.approx(2 / 3)
    assert agreement(["#### 4", "no answer"], plain) == 0.5
    assert agreement(["#### 4"], plain) is None


def test_signals_and_score() -> None:
    plain = AnswerSettings()
    values = signals("She has 16 eggs and eats 3.", SLIP, plain)
    assert values["arithmetic_wrong"] == 1.0
    assert values["final_format"] == 1.0
    assert values["prompt_numbers_missing"] == 0.0
    weighted = AnswerSettings(weights=(("bias", 2.0), ("arithmetic_wrong", -4.0)))
    assert answer_score(values, weighted) == pytest.approx(1 / (1 + 2.718281828**2), rel=1e-6)


def test_settings_parse_from_the_policy_mapping() -> None:
    parsed = GateSettings.from_mapping(
        {"final_answer_format": "-?\\d+", "answer_weights": {"bias": 1, "hedges": -2}}
    )
    assert parsed.answer.weights == (("bias", 1.0), ("hedges", -2.0))
    with pytest.raises(ValueError, match="unknown signals"):
        GateSettings.from_mapping({"answer_weights": {"vibes": 1}})
    with pytest.raises(ValueError, match="exactly one group"):
        GateSettings.from_mapping({"final_answer_pattern": "no group"})
    with pytest.raises(ValueError, match="min_agreement"):
        GateSettings.from_mapping({"min_agreement": 0})

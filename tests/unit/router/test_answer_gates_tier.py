"""The gates that need the prompt or every choice, run by TierGates: self-consistency, the
signal score and the sandboxed code run."""

import time
from dataclasses import replace
from typing import Any

import pytest
from opentelemetry import trace

from services.router.code_gate import CodeLimits, CodeRunner, extract_code, stated_tests
from services.router.tier_gates import TierGates
from shared.chat import Choice, Finish
from tests.unit.router.fakes import answer
from tests.unit.router.fixtures import admit_acme, policy_doc


def doc_with(gates: list[str], settings: dict[str, Any]) -> dict[str, Any]:
    doc = policy_doc()
    chat = doc["tenants"]["acme"]["model_classes"]["chat"]
    chat["tiers"][0]["gates"] = ["finish_reason", *gates]
    chat["gate_settings"] = settings
    return doc


async def check(
    gates: list[str],
    text: str,
    question: str = "Q?",
    settings: dict[str, Any] | None = None,
    choices: tuple[str, ...] = (),
    gate_set: TierGates | None = None,
) -> tuple[bool, str]:
    request = admit_acme(doc_with(gates, settings or {}), question)
    tier = request.model_class.tiers[0]
    reply = answer(text, "cheap")
    if choices:
        reply = replace(
            reply, choices=tuple(Choice(i, c, Finish.STOP) for i, c in enumerate(choices))
        )
    verdict = await (gate_set or TierGates()).check(
        request, tier, reply, None, time.monotonic() + 30, trace.INVALID_SPAN
    )
    return verdict.verdict.passed, verdict.verdict.reason or " ".join(verdict.notes)


async def test_self_consistency_fails_when_the_choices_disagree() -> None:
    agreeing = ("#### 4", "#### 4", "#### 5")
    assert await check(["self_consistency"], "#### 4", choices=agreeing) == (
        True,
        "final answers agree 0.67",
    )
    split = ("#### 4", "#### 5", "#### 6")
    passed, reason = await check(
        ["self_consistency"], "#### 4", settings={"min_agreement": 0.5}, choices=split
    )
    assert (passed, reason) == (False, "final answers agree 0.33")


async def test_self_consistency_skips_a_single_choice() -> None:
    passed, notes = await check(["self_consistency"], "#### 4")
    assert passed and "skipped: one choice, nothing to compare" in notes


async def test_answer_score_escalates_below_min_answer_score() -> None:
    settings = {
        "answer_weights": {"bias": 2.0, "arithmetic_wrong": -4.0},
        "min_answer_score": 0.5,
    }
    good = await check(["answer_score"], "2 + 2 = 4\n#### 4", "2 and 2?", settings)
    bad = await check(["answer_score"], "2 + 2 = 5\n#### 5", "2 and 2?", settings)
    assert good == (True, "answer_score 0.881 >= 0.5")
    assert bad == (False, "answer_score 0.119 < 0.5")


def test_code_and_tests_are_found_in_answer_and_prompt() -> None:
    assert extract_code("Here:\n```python\ndef f(x):\n    return x\n```\nDone") == (
        "def f(x):\n    return x"
    )
    assert extract_code("[PYTHON]\nx = 1\n[/PYTHON]") == "x = 1"
    assert extract_code("no code") is None
    prompt = "Write f.\nassert f(2) == 4\n  assert f(0) == 0\nnot an assert"
    assert stated_tests(prompt) == ["assert f(2) == 4", "assert f(0) == 0"]


SQUARE = "```python\ndef f(x):\n    return x * x\n```"
PROMPT = "Write f.\nassert f(2) == 4\nassert f(3) == 9"


@pytest.fixture
def runner() -> TierGates:
    # No network namespace: the socket block inside the program is what these tests rely on.
    return TierGates(code=CodeRunner(CodeLimits(wall_s=3.0), ()))


async def test_code_tests_run_the_prompts_asserts(runner: TierGates) -> None:
    assert await check(["code_tests"], SQUARE, PROMPT, gate_set=runner) == (
        True,
        "2 stated tests ran clean",
    )
    wrong = SQUARE.replace("x * x", "x + x")
    passed, reason = await check(["code_tests"], wrong, PROMPT, gate_set=runner)
    assert not passed and reason.startswith("2 stated tests failed: AssertionError")


async def test_code_tests_fail_no_code_a_hang_and_the_network(runner: TierGates) -> None:
    assert await check(["code_tests"], "just prose", PROMPT, gate_set=runner) == (
        False,
        "the answer holds no fenced Python code",
    )
    hang = "```python\nwhile True:\n    pass\n```"
    assert await check(["code_tests"], hang, "Loop.", gate_set=runner) == (
        False,
        "the code ran past 3 s",
    )
    net = "```python\nimport socket\nsocket.create_connection(('127.0.0.1', 9))\n```"
    passed, reason = await check(["code_tests"], net, "Connect.", gate_set=runner)
    assert not passed and "network access is blocked" in reason


async def test_code_tests_limit_memory(runner: TierGates) -> None:
    greedy = "```python\nx = bytearray(2 * 1024 ** 3)\n```"
    passed, reason = await check(["code_tests"], greedy, "Allocate.", gate_set=runner)
    assert not passed and "MemoryError" in reason

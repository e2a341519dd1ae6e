"""The tool-call gate: a tier's tool calls pass only if the caller's tool runner could run them;
a cut at the caller's own max_tokens is never held against an answer."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.router.gates import GateInput, GateSettings, evaluate
from shared.chat import (
    Finish,
    FormatKind,
    ResponseFormat,
    ToolCall,
    ToolChoiceMode,
    ToolFunction,
    ToolSet,
)

WEATHER = ToolFunction(
    "get_weather",
    "Current weather in a city",
    json.dumps(
        {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1},
            },
            "required": ["city"],
            "additionalProperties": False,
        }
    ),
)
TIME = ToolFunction("get_time", "Local time", "")
TOOLS = ToolSet((WEATHER, TIME))
ALL = ("finish_reason", "truncation", "refusal", "min_length")
SETTINGS = GateSettings(min_length_chars=3)


def call(arguments: str, name: str = "get_weather", call_id: str = "call_1") -> ToolCall:
    return ToolCall(call_id, name, arguments)


def verdict(*calls: ToolCall, tools: ToolSet = TOOLS, content: str = ""):
    answer = GateInput(content, Finish.TOOL_CALLS, tool_calls=calls, tools=tools)
    return evaluate(ALL, answer, SETTINGS)


def test_a_valid_call_passes_though_it_has_no_text() -> None:
    assert verdict(call('{"city": "Paris", "unit": "celsius"}')).passed


def test_a_function_without_parameters_takes_any_object() -> None:
    assert verdict(call("{}", name="get_time")).passed


@pytest.mark.parametrize(
    ("arguments", "name", "kind"),
    [
        ('{"city": "Paris"}', "get_wether", "unknown_function"),
        ('{"city": "Paris"', "get_weather", "arguments_not_json"),
        ('["Paris"]', "get_weather", "arguments_not_object"),
        ('{"unit": "celsius"}', "get_weather", "schema"),
        ('{"city": 42}', "get_weather", "schema"),
        ('{"city": "Paris", "unit": "kelvin"}', "get_weather", "schema"),
        ('{"city": "Paris", "days": 0}', "get_weather", "schema"),
        ('{"city": "Paris", "country": "FR"}', "get_weather", "schema"),
    ],
)
def test_a_broken_call_fails_with_its_kind(arguments: str, name: str, kind: str) -> None:
    result = verdict(call(arguments, name=name))
    assert not result.passed
    assert result.gate == "tool_call"
    assert result.reason.startswith(f"{kind}:"), result.reason


def test_the_schema_failure_names_the_field() -> None:
    result = verdict(call('{"city": "Paris", "unit": "kelvin"}'))
    assert "unit" in result.reason and "kelvin" in result.reason


@pytest.mark.parametrize(
    ("tools", "calls", "passes"),
    [
        (ToolSet((WEATHER,), ToolChoiceMode.NONE), (call('{"city": "Oslo"}'),), False),
        (ToolSet((WEATHER,), ToolChoiceMode.REQUIRED), (), False),
        (ToolSet((WEATHER,), ToolChoiceMode.REQUIRED), (call('{"city": "Oslo"}'),), True),
        (
            ToolSet((WEATHER, TIME), ToolChoiceMode.FUNCTION, "get_time"),
            (call('{"city": "Oslo"}'),),
            False,
        ),
        (
            ToolSet((WEATHER, TIME), ToolChoiceMode.FUNCTION, "get_time"),
            (call("{}", name="get_time"),),
            True,
        ),
        (ToolSet((WEATHER, TIME), ToolChoiceMode.FUNCTION, "get_time"), (), False),
        (
            ToolSet((WEATHER, TIME), parallel_tool_calls=False),
            (call('{"city": "Oslo"}'), call("{}", name="get_time", call_id="call_2")),
            False,
        ),
        (
            ToolSet((WEATHER, TIME)),
            (call('{"city": "Oslo"}'), call("{}", name="get_time", call_id="call_2")),
            True,
        ),
        (ToolSet(), (call('{"city": "Oslo"}'),), False),
    ],
)
def test_tool_choice_and_parallel_calls_are_respected(
    tools: ToolSet, calls: tuple[ToolCall, ...], passes: bool
) -> None:
    result = verdict(*calls, tools=tools, content="" if calls else "A plain answer in text.")
    assert result.passed is passes, result


def test_call_ids_must_be_present_and_distinct() -> None:
    assert verdict(call('{"city": "Oslo"}', call_id="")).reason.startswith("missing_id:")
    twice = (call('{"city": "Oslo"}'), call("{}", name="get_time"))
    assert verdict(*twice).reason.startswith("duplicate_id:")


def test_a_text_answer_to_a_request_with_tools_is_judged_as_text() -> None:
    answer = GateInput("ok", Finish.STOP, tools=TOOLS)
    assert evaluate(ALL, answer, SETTINGS).gate == "min_length"
    fine = GateInput("It is sunny in Paris today.", Finish.STOP, tools=TOOLS)
    assert evaluate(ALL, fine, SETTINGS).passed


def test_a_cut_at_the_callers_own_max_tokens_is_the_answer() -> None:
    cut = GateInput("The answer is that the", Finish.LENGTH, caller_max_tokens=True)
    assert evaluate(ALL, cut, SETTINGS).passed
    json_cut = GateInput(
        '{"name": "Par',
        Finish.LENGTH,
        ResponseFormat(FormatKind.JSON_OBJECT),
        caller_max_tokens=True,
    )
    assert evaluate(ALL, json_cut, SETTINGS).passed


def test_a_cut_at_the_policys_limit_still_escalates() -> None:
    cut = GateInput("The answer is that the", Finish.LENGTH)
    assert evaluate(ALL, cut, SETTINGS).gate == "finish_reason"


@settings(max_examples=300, deadline=None, database=None)
@given(
    city=st.one_of(st.text(max_size=20), st.integers(), st.none(), st.booleans()),
    unit=st.one_of(st.sampled_from(["celsius", "fahrenheit", "kelvin", ""]), st.integers()),
    days=st.one_of(st.integers(min_value=-3, max_value=5), st.text(max_size=3)),
)
def test_the_gate_agrees_with_the_schema(city: object, unit: object, days: object) -> None:
    arguments = {"city": city, "unit": unit, "days": days}
    valid = (
        isinstance(city, str)
        and unit in ("celsius", "fahrenheit")
        and isinstance(days, int)
        and days >= 1
    )
    result = verdict(call(json.dumps(arguments)))
    assert result.passed is valid, (arguments, result)

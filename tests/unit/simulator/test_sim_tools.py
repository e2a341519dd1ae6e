"""Tool calls: which tool a model calls, schema-valid arguments, round trips, tool_choice,
parallel calls, and the scripted malformations of the cheap tier."""

from __future__ import annotations

from typing import Any

import jsonschema
import orjson
import pytest
from openai.types.chat import ChatCompletion

from tests.unit.simulator.helpers import CHEAP, chat, make_client
from tests.unit.simulator.tools_fixtures import SCHEMAS, TOOLS, WEATHER

ASK_WEATHER = "What is the weather forecast in Lisbon this week?"
ASK_BOTH = "What is the weather in Lisbon, and the local time there?"


def only_choice(body: dict[str, Any]) -> dict[str, Any]:
    ChatCompletion.model_validate(body)
    [choice] = body["choices"]
    return choice


def assert_valid_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Every call names a given tool and its arguments fit that tool's schema."""
    assert message["content"] is None
    calls = message["tool_calls"]
    for call in calls:
        assert call["id"].startswith("call_") and call["type"] == "function"
        arguments = orjson.loads(call["function"]["arguments"])
        jsonschema.validate(arguments, SCHEMAS[call["function"]["name"]])
    return calls


async def test_a_matching_question_gets_a_tool_call_with_schema_valid_arguments() -> None:
    async with make_client() as client:
        for model in ("gpt-4o", "deepseek-reasoner", CHEAP):
            choice = only_choice((await chat(client, ASK_WEATHER, model=model, tools=TOOLS)).json())
            assert choice["finish_reason"] == "tool_calls"
            [call] = assert_valid_calls(choice["message"])
            assert call["function"]["name"] == "get_weather"
            # String arguments come from the prompt: the place it names.
            assert orjson.loads(call["function"]["arguments"])["city"] == "Lisbon"


async def test_tool_calls_are_deterministic() -> None:
    async with make_client() as client:
        first = (await chat(client, ASK_WEATHER, tools=TOOLS)).json()
        again = (await chat(client, ASK_WEATHER, tools=TOOLS, region="ap-south")).json()
    assert first["choices"][0]["message"] == again["choices"][0]["message"]


async def test_a_question_no_tool_matches_gets_text_under_auto() -> None:
    async with make_client() as client:
        choice = only_choice((await chat(client, "Write a haiku about autumn", tools=TOOLS)).json())
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] and "tool_calls" not in choice["message"]


async def test_required_and_named_tool_choices_always_call() -> None:
    named = {"type": "function", "function": {"name": "get_local_time"}}
    async with make_client() as client:
        required = (
            await chat(client, "Write a haiku about autumn", tools=TOOLS, tool_choice="required")
        ).json()
        forced = (await chat(client, ASK_WEATHER, tools=TOOLS, tool_choice=named)).json()
    [call] = assert_valid_calls(only_choice(required)["message"])
    assert call["function"]["name"] == "get_weather"  # no match: the first tool
    [call] = assert_valid_calls(only_choice(forced)["message"])
    assert call["function"]["name"] == "get_local_time"


async def test_tool_choice_none_gets_text() -> None:
    async with make_client() as client:
        choice = only_choice(
            (await chat(client, ASK_WEATHER, tools=TOOLS, tool_choice="none")).json()
        )
    assert choice["finish_reason"] == "stop" and choice["message"]["content"]


async def test_two_matching_tools_get_two_parallel_calls_unless_parallel_is_off() -> None:
    async with make_client() as client:
        parallel = (await chat(client, ASK_BOTH, tools=TOOLS)).json()
        serial = (await chat(client, ASK_BOTH, tools=TOOLS, parallel_tool_calls=False)).json()
    calls = assert_valid_calls(only_choice(parallel)["message"])
    assert sorted(c["function"]["name"] for c in calls) == ["get_local_time", "get_weather"]
    assert len({c["id"] for c in calls}) == 2
    assert len(assert_valid_calls(only_choice(serial)["message"])) == 1


async def test_a_tool_result_as_last_turn_gets_a_text_answer_using_it() -> None:
    async with make_client() as client:
        first = (await chat(client, ASK_WEATHER, tools=TOOLS)).json()
        message = first["choices"][0]["message"]
        [call] = message["tool_calls"]
        follow_up = {
            "model": "gpt-4o",
            "tools": TOOLS,
            "messages": [
                {"role": "user", "content": ASK_WEATHER},
                message,
                {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 24 C all week"},
            ],
        }
        response = await client.post("/us-east/v1/chat/completions", json=follow_up)
    choice = only_choice(response.json())
    assert choice["finish_reason"] == "stop"
    assert "get_weather" in choice["message"]["content"]
    assert "sunny, 24 C all week" in choice["message"]["content"]


async def test_max_tokens_cuts_tool_arguments_with_finish_length() -> None:
    async with make_client() as client:
        choice = only_choice((await chat(client, ASK_WEATHER, tools=TOOLS, max_tokens=6)).json())
    assert choice["finish_reason"] == "length"
    [call] = choice["message"]["tool_calls"]
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(call["function"]["arguments"])


def broken_reason(message: dict[str, Any]) -> str:
    """Why a tool call would fail a gate: the checks a router makes, in order."""
    if not message.get("tool_calls"):
        return "no call"
    call = message["tool_calls"][0]["function"]
    if call["name"] not in SCHEMAS:
        return "unknown function"
    try:
        arguments = orjson.loads(call["arguments"])
    except orjson.JSONDecodeError:
        return "not JSON"
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(SCHEMAS[call["name"]]).iter_errors(arguments)
    )
    if error is None:
        return "valid"
    return "missing field" if error.validator == "required" else "wrong type or enum"


@pytest.mark.parametrize(
    ("marker", "reason"),
    [
        ("[sim:bad-tool-name]", "unknown function"),
        ("[sim:bad-tool-json]", "not JSON"),
        ("[sim:bad-tool-args]", "missing field"),
        ("[sim:bad-tool-type]", "wrong type or enum"),
        ("[sim:skip-tool]", "no call"),
    ],
)
async def test_markers_make_the_cheap_tier_malform_its_call(marker: str, reason: str) -> None:
    prompt = f"{ASK_WEATHER} {marker}"
    async with make_client() as client:
        cheap = await chat(client, prompt, model=CHEAP, tools=TOOLS, tool_choice="required")
        strong = await chat(client, prompt, model="gpt-4o", tools=TOOLS, tool_choice="required")
    ChatCompletion.model_validate(cheap.json())
    assert broken_reason(cheap.json()["choices"][0]["message"]) == reason
    assert broken_reason(strong.json()["choices"][0]["message"]) == "valid"


async def test_cheap_models_malform_a_deterministic_share_and_strong_ones_none() -> None:
    prompts = [f"What is the weather forecast in city number {i}?" for i in range(200)]

    async def reasons(model: str, asked: list[str]) -> list[str]:
        async with make_client() as client:
            bodies = [(await chat(client, p, model=model, tools=[WEATHER])).json() for p in asked]
        return [broken_reason(body["choices"][0]["message"]) for body in bodies]

    cheap = await reasons(CHEAP, prompts)
    share = sum(r != "valid" for r in cheap) / len(cheap)
    # Qwen/Qwen3-8B's malformed_rate is 0.05 in the default scenario.
    assert 0.01 < share < 0.12
    assert len({r for r in cheap if r != "valid"}) >= 2  # more than one kind of mistake
    assert await reasons(CHEAP, prompts[:40]) == cheap[:40]
    assert set(await reasons("gpt-4o", prompts[:100])) == {"valid"}

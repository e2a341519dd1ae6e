"""The Messages door reads Anthropic's request into the same admitted request as the OpenAI
door (issue 19, Must show 1): system as a string or blocks, text, image (base64 and URL),
tool_use and tool_result blocks, tools and tool_choice, max_tokens, stop_sequences,
temperature, top_p, metadata.user_id; and refuses bad input in Anthropic's error shape,
naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from services.router.model import CacheMode, ChatRequest
from shared.chat import ImagePart, Role, ToolCall, ToolChoiceMode
from tests.unit.router.door_rig import API_KEY, ScriptedPipeline, door_app, http_client, result_for

HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
USER: Any = {"role": "user", "content": "What is the weather in Lisbon?"}
WEATHER: Any = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CALL: Any = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "L"}}
PNG = "iVBORw0KGgo="


async def post(body: dict[str, Any], headers: dict[str, str] = HEADERS) -> tuple[int, Any, Any]:
    """Status, JSON body, and the request the pipeline was given (None if none was)."""
    pipeline = ScriptedPipeline(lambda request: [result_for(request)])
    async with http_client(door_app(pipeline)) as client:
        response = await client.post("/v1/messages", json=body, headers=headers)
    admitted = pipeline.requests[0] if pipeline.requests else None
    return response.status_code, response.json(), admitted


async def admitted(**body: Any) -> ChatRequest:
    status, answer, request = await post({"model": "chat", "max_tokens": 50, **body})
    assert status == 200, answer
    assert request is not None
    return request


async def test_system_text_sampling_and_the_end_user_are_carried() -> None:
    request = await admitted(
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        messages=[USER],
        stop_sequences=["END"],
        temperature=0.5,
        top_p=0.9,
        metadata={"user_id": "u-7"},
        sluice={"cache": False},
    )
    assert [t.role for t in request.turns] == [Role.SYSTEM, Role.USER]
    assert request.turns[0].content == "Be brief.\n\nBe kind."
    assert request.sampling.max_tokens == 50 and request.sampling.stop == ("END",)
    assert (request.sampling.temperature, request.sampling.top_p) == (0.5, 0.9)
    assert request.end_user == "u-7" and request.cache_mode is CacheMode.BYPASS
    assert (await admitted(system="Be brief.", messages=[USER])).turns[0].content == "Be brief."


async def test_images_become_image_parts_base64_as_data_urls() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    linked = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    text = {"type": "text", "text": "What is this?"}
    request = await admitted(
        model="vision", messages=[{"role": "user", "content": [text, image, linked]}]
    )
    turn = request.turns[0]
    assert turn.content == "What is this?"
    assert turn.parts == (
        "What is this?",
        ImagePart(f"data:image/png;base64,{PNG}"),
        ImagePart("https://example.com/a.png"),
    )


async def test_a_tool_round_trip_becomes_tool_calls_and_tool_turns() -> None:
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [{"type": "text", "text": "21 C"}],
    }
    request = await admitted(
        messages=[
            USER,
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."}, CALL]},
            {"role": "user", "content": [result, {"type": "text", "text": "And tomorrow?"}]},
        ],
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
    )
    roles = [t.role for t in request.turns]
    assert roles == [Role.USER, Role.ASSISTANT, Role.TOOL, Role.USER]
    assert request.turns[1].tool_calls == (ToolCall("toolu_1", "get_weather", '{"city":"L"}'),)
    assert request.turns[2].tool_call_id == "toolu_1" and request.turns[2].content == "21 C"
    tools = request.tools
    assert (
        tools.functions[0].name == "get_weather" and '"city"' in tools.functions[0].parameters_json
    )
    assert (tools.choice, tools.function_name, tools.parallel_tool_calls) == (
        ToolChoiceMode.FUNCTION, "get_weather", False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("choice", "mode"),
    [
        ("auto", ToolChoiceMode.AUTO),
        ("any", ToolChoiceMode.REQUIRED),
        ("none", ToolChoiceMode.NONE),
    ],
)
async def test_tool_choice_modes(choice: str, mode: ToolChoiceMode) -> None:
    request = await admitted(messages=[USER], tools=[WEATHER], tool_choice={"type": choice})
    assert request.tools.choice is mode


async def test_an_error_tool_result_says_so() -> None:
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "boom", "is_error": True}
    request = await admitted(
        messages=[
            USER,
            {"role": "assistant", "content": [CALL]},
            {"role": "user", "content": [result]},
        ],
        tools=[WEATHER],
    )
    assert request.turns[-1].content == "Error: boom"


ALT: Any = {"role": "assistant", "content": "Sure."}
BAD_INPUT: list[tuple[dict[str, Any], str]] = [
    ({"messages": [USER]}, "max_tokens"),
    ({"max_tokens": 0, "messages": [USER]}, "max_tokens"),
    ({"max_tokens": 9, "messages": [USER, {"role": "assistant", "content": [CALL]}, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}]}]}, "messages[2].content[0].tool_use_id"),  # noqa: E501
    ({"max_tokens": 9, "messages": [USER, USER]}, "messages[1].role"),
    ({"max_tokens": 9, "messages": [ALT, USER]}, "messages[0].role"),
    ({"max_tokens": 9, "messages": [USER, ALT]}, "messages[1].role"),
    ({"max_tokens": 9, "messages": [{"role": "user", "content": ""}]}, "messages[0].content"),
    ({"max_tokens": 9, "messages": [{"role": "user", "content": []}]}, "messages[0].content"),
    ({"max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "messages[0].content[0].type"),  # noqa: E501
    ({"max_tokens": 9, "messages": [{"role": "user", "content": [{"type": "document"}]}]}, "messages[0].content[0].type"),  # noqa: E501
    ({"max_tokens": 9, "messages": [USER], "top_k": 5}, "top_k"),
    ({"max_tokens": 9, "messages": [USER], "temperature": 1.5}, "temperature"),
    ({"max_tokens": 9, "messages": [USER], "thinking": {"type": "enabled"}}, "thinking"),
    ({"max_tokens": 9, "messages": [USER], "frequency_penalty": 1}, "frequency_penalty"),
    ({"max_tokens": 9, "messages": [USER], "tools": [{"name": "x"}]}, "tools[0].input_schema"),
    ({"max_tokens": 9, "messages": [USER], "tools": [{**WEATHER, "name": "bad name"}]}, "tools[0].name"),  # noqa: E501
    ({"max_tokens": 9, "messages": [USER], "tools": [{"type": "web_search_20250305", "name": "w"}]}, "tools[0].type"),  # noqa: E501
    ({"max_tokens": 9, "messages": [USER], "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice"),  # noqa: E501
    ({"max_tokens": 9, "messages": [USER], "stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),  # noqa: E501
    ({"max_tokens": 9, "messages": [USER], "metadata": {"user_id": "u" * 300}}, "metadata.user_id"),
    ({"max_tokens": 9, "messages": [USER], "model": "nope"}, "model"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "field"), BAD_INPUT)
async def test_bad_input_is_a_400_in_anthropics_shape_naming_the_field(
    body: dict[str, Any], field: str
) -> None:
    status, answer, request = await post({"model": "chat", **body})
    assert status == 400 and request is None
    assert answer["type"] == "error"
    assert answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["message"].startswith(field), answer


async def test_top_k_is_carried_to_a_class_whose_tiers_all_take_it() -> None:
    request = await admitted(model="vision", max_tokens=9, messages=[USER], top_k=5)
    assert request.sampling.top_k == 5
    status, answer, _ = await post(
        {"model": "chat", "max_tokens": 9, "messages": [USER], "top_k": 5}
    )
    assert status == 400
    assert (
        "model 'cheap' (tier 1 of model class 'chat') cannot take top_k"
        in (answer["error"]["message"])
    )


async def test_an_image_to_a_blind_class_names_the_block_as_sent() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    text = {"type": "text", "text": "What is this?"}
    body = {"model": "chat", "max_tokens": 9, "system": "x"}
    status, answer, _ = await post(
        {**body, "messages": [USER, ALT, {"role": "user", "content": [text, image]}]}
    )
    assert status == 400
    assert answer["error"]["message"].startswith("messages[2].content[1] is an image")


async def test_a_wrong_key_is_a_401_and_versions_are_checked() -> None:
    body = {"model": "chat", "max_tokens": 9, "messages": [USER]}
    status, answer, _ = await post(body, {**HEADERS, "x-api-key": "wrong"})
    assert (status, answer["error"]["type"]) == (401, "authentication_error")
    status, answer, _ = await post(body, {**HEADERS, "anthropic-version": "1999-01-01"})
    assert status == 400 and answer["error"]["message"].startswith("anthropic-version")
    status, answer, _ = await post(body, {"x-api-key": API_KEY})
    assert status == 400 and answer["error"]["message"].startswith("anthropic-version")
    status, answer, _ = await post(body, {**HEADERS, "anthropic-beta": "x"})
    assert status == 400 and answer["error"]["message"].startswith("anthropic-beta")
    status, _, _ = await post(
        body, {"authorization": f"Bearer {API_KEY}", "anthropic-version": "2023-06-01"}
    )
    assert status == 200

"""The HTTP front door reads the whole chat-completions request into admission's terms:
messages of every role (tool calls, tool results, refusals, text and image parts), tools,
tool_choice and the sampling fields; what it does not carry is a 400 naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from services.router.model import ChatRequest
from shared.chat import FormatKind, ImagePart, Role, ToolCall, ToolChoiceMode
from tests.unit.router.door_rig import HEADERS, ScriptedPipeline, door_app, http_client, result_for

USER = {"role": "user", "content": "What is the weather in Lisbon?"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
        "strict": True,
    },
}
ASSISTANT_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
        }
    ],
}


async def send(body: dict[str, Any]) -> tuple[Any, ChatRequest | None]:
    """The door's response and, when admitted, the request the pipeline got."""
    pipeline = ScriptedPipeline(lambda request: [result_for(request)])
    async with http_client(door_app(pipeline)) as client:
        response = await client.post("/v1/chat/completions", json=body, headers=HEADERS)
    return response, (pipeline.requests[0] if pipeline.requests else None)


async def admitted(body: dict[str, Any]) -> ChatRequest:
    response, chat = await send(body)
    assert response.status_code == 200, response.text
    assert chat is not None
    return chat


async def refused(body: dict[str, Any], param: str) -> str:
    response, chat = await send(body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert chat is None
    return str(error["message"])


async def test_a_tool_round_trip_reaches_the_pipeline_whole() -> None:
    body = {
        "messages": [
            {"role": "developer", "content": "Be brief.", "name": "ops"},
            USER,
            ASSISTANT_CALL,
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        ],
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
    }
    chat = await admitted(body)
    system, _, call, result = chat.turns
    assert (system.role, system.name) == (Role.SYSTEM, "ops")
    assert call.role is Role.ASSISTANT and call.content == ""
    assert call.tool_calls == (ToolCall("call_1", "get_weather", '{"city": "Lisbon"}'),)
    assert (result.role, result.tool_call_id) == (Role.TOOL, "call_1")
    function = chat.tools.functions[0]
    assert (function.name, function.strict) == ("get_weather", True)
    assert '"required":["city"]' in function.parameters_json
    assert chat.tools.choice is ToolChoiceMode.FUNCTION
    assert chat.tools.function_name == "get_weather"
    assert chat.tools.parallel_tool_calls is False


@pytest.mark.parametrize(
    ("choice", "mode"),
    [
        ("none", ToolChoiceMode.NONE),
        ("auto", ToolChoiceMode.AUTO),
        ("required", ToolChoiceMode.REQUIRED),
    ],
)
async def test_tool_choice_modes(choice: str, mode: ToolChoiceMode) -> None:
    chat = await admitted({"messages": [USER], "tools": [WEATHER], "tool_choice": choice})
    assert chat.tools.choice is mode


async def test_text_and_image_parts_keep_their_order_and_text() -> None:
    image = {
        "type": "image_url",
        "image_url": {"url": "https://example.com/a.png", "detail": "low"},
    }
    parts = [{"type": "text", "text": "What is "}, image, {"type": "text", "text": "this?"}]
    chat = await admitted({"model": "vision", "messages": [{"role": "user", "content": parts}]})
    turn = chat.turns[0]
    assert turn.content == "What is this?"
    assert turn.parts == ("What is ", ImagePart("https://example.com/a.png", "low"), "this?")


async def test_text_parts_alone_are_plain_text() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    chat = await admitted({"messages": [{"role": "user", "content": parts}]})
    assert chat.turns[0].content == "ab" and chat.turns[0].parts == ()


async def test_an_assistant_refusal_is_kept() -> None:
    refusal = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    parts = {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}
    chat = await admitted({"messages": [USER, refusal, USER, parts, USER]})
    assert chat.turns[1].refusal == "I can't help with that." and chat.turns[1].content == ""
    assert chat.turns[3].refusal == "No."


async def test_sampling_fields_are_carried() -> None:
    body = {
        "messages": [USER],
        "n": 3,
        "seed": -(2**63),
        "logprobs": True,
        "top_logprobs": 5,
        "presence_penalty": 0.5,
        "frequency_penalty": -1,
        "stop": "END",
        "max_completion_tokens": 40,
        "max_tokens": 99,
    }
    sampling = (await admitted(body)).sampling
    assert (sampling.n, sampling.seed, sampling.logprobs, sampling.top_logprobs) == (
        3,
        -(2**63),
        True,
        5,
    )
    assert (sampling.presence_penalty, sampling.frequency_penalty) == (0.5, -1.0)
    assert sampling.stop == ("END",) and sampling.max_tokens == 40


async def test_user_metadata_and_schema_name_are_carried() -> None:
    schema = {"name": "Weather", "schema": {"type": "object"}, "strict": True}
    body = {
        "messages": [USER],
        "user": "u-42",
        "metadata": {"team": "search", "env": "prod"},
        "response_format": {"type": "json_schema", "json_schema": schema},
    }
    chat = await admitted(body)
    assert chat.end_user == "u-42"
    assert chat.metadata == (("env", "prod"), ("team", "search"))
    assert chat.response_format.kind is FormatKind.JSON_SCHEMA
    assert (chat.response_format.schema_name, chat.response_format.strict) == ("Weather", True)


async def test_safety_identifier_is_the_end_user_and_must_agree_with_user() -> None:
    chat = await admitted({"messages": [USER], "safety_identifier": "hash-1"})
    assert chat.end_user == "hash-1"
    same = await admitted({"messages": [USER], "safety_identifier": "a", "user": "a"})
    assert same.end_user == "a"
    await refused({"messages": [USER], "safety_identifier": "a", "user": "b"}, "safety_identifier")
    # Found by the fuzzer: too long a safety_identifier was named `user` in the error.
    await refused({"messages": [USER], "safety_identifier": "a" * 257}, "safety_identifier")


@pytest.mark.parametrize(
    ("messages", "param", "words"),
    [
        (
            [{"role": "function", "name": "f", "content": "x"}],
            "messages[0].role",
            "use tool messages",
        ),
        (
            [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
            "messages[0].content[0].type",
            "not supported",
        ),
        (
            [{"role": "user", "content": [{"type": "file", "file": {}}]}],
            "messages[0].content[0].type",
            "not supported",
        ),
        (
            [
                {
                    "role": "system",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
                },
                USER,
            ],
            "messages[0].content[0].type",
            "is not one of text",
        ),
        (
            [USER, {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}, USER],
            "messages[1].function_call",
            "use tool_calls",
        ),
        (
            [USER, {"role": "assistant", "audio": {"id": "a"}}, USER],
            "messages[1].audio",
            "text only",
        ),
        (
            [{"role": "user", "content": "hi", "colour": "red"}],
            "messages[0].colour",
            "unknown fields",
        ),
        ([{"role": "user", "content": None}], "messages[0].content", "is required"),
        (
            [USER, {"role": "assistant", "content": None}, USER],
            "messages[1].content",
            "is required",
        ),
        (
            [
                USER,
                {**ASSISTANT_CALL, "tool_calls": [{"id": "c", "type": "custom", "custom": {}}]},
                USER,
            ],
            "messages[1].tool_calls[0].type",
            "use function",
        ),
        (
            [USER, {"role": "tool", "tool_call_id": "call_1", "content": "21"}],
            "messages[1].tool_call_id",
            "answers no tool call",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": ""}}]}],
            "messages[0].content[0].image_url.url",
            "non-empty",
        ),
    ],
)
async def test_messages_sluice_does_not_carry_are_400s(
    messages: list[Any], param: str, words: str
) -> None:
    assert words in await refused({"model": "vision", "messages": messages}, param)


@pytest.mark.parametrize(
    ("extra", "param", "words"),
    [
        (
            {"tools": [{"type": "custom", "custom": {"name": "x"}}]},
            "tools[0].type",
            "use function tools",
        ),
        (
            {"tools": [{"type": "function", "function": {"description": "no name"}}]},
            "tools[0].function.name",
            "is missing",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": "object"}}]},
            "tools[0].function.parameters",
            "JSON Schema object",
        ),
        (
            {
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}
                ]
            },
            "tools[0].function.parameters",
            "not a valid schema",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "colour": 1}}]},
            "tools[0].function.colour",
            "unknown",
        ),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "get_time"}},
            },
            "tool_choice",
            "not an offered tool",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "allowed_tools": {}}},
            "tool_choice",
            "not supported",
        ),
        ({"tools": [WEATHER], "tool_choice": "always"}, "tool_choice", "must be"),
        ({"tool_choice": "required"}, "tool_choice", "offers no tools"),
        ({"n": 9}, "n", "[1, 8]"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "[0, 20]"),
        ({"top_logprobs": 3}, "top_logprobs", "needs logprobs"),
        ({"metadata": {"k": 1}}, "metadata", "strings"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "at most 16"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed with stream"),
        (
            {"stream": True, "stream_options": {"include_obfuscation": True}},
            "stream_options.include_obfuscation",
            "not supported",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "a b", "schema": {}},
                }
            },
            "response_format.json_schema.name",
            "must match",
        ),
        ({"seed": 2**63}, "seed", "integer"),
    ],
)
async def test_fields_out_of_bounds_are_400s_naming_them(
    extra: dict[str, Any], param: str, words: str
) -> None:
    assert words in await refused({"messages": [USER], **extra}, param)


async def test_an_image_for_a_class_with_a_text_only_tier_names_the_model() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    message = {"role": "user", "content": [{"type": "text", "text": "what?"}, image]}
    words = await refused({"model": "chat", "messages": [message]}, "messages[0].content[1]")
    assert "model 'cheap'" in words and "cannot take images" in words

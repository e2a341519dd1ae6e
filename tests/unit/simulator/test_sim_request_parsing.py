"""Request parsing: every chat-completions field is validated, and a bad one is a 400 that
names it in OpenAI's `param` field."""

from __future__ import annotations

from typing import Any

import pytest

from services.simulator.request import MAX_CHOICES
from tests.unit.simulator.helpers import chat_body, make_client

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}


def with_messages(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": list(messages), **extra}


USER = {"role": "user", "content": "hi"}
BAD_REQUESTS = [
    (chat_body("hi", tools=[{"type": "function", "function": {}}]), "tools[0].function.name"),
    (
        chat_body("hi", tools=[{"type": "function", "function": {"name": "bad name"}}]),
        "tools[0].function.name",
    ),
    (chat_body("hi", tools=[{"type": "retrieval"}]), "tools[0].type"),
    (
        chat_body("hi", tools=[{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
        "tools[0].function.parameters",
    ),
    (
        chat_body(
            "hi",
            tools=[
                {"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}
            ],
        ),
        "tools[0].function.parameters",
    ),
    (
        chat_body(
            "hi",
            tools=[
                {
                    "type": "function",
                    "function": {"name": "f", "parameters": {"type": "object", "required": 3}},
                }
            ],
        ),
        "tools[0].function.parameters",
    ),
    (chat_body("hi", tools=[WEATHER, WEATHER]), "tools[1]"),
    (chat_body("hi", tool_choice="sometimes", tools=[WEATHER]), "tool_choice"),
    (chat_body("hi", tool_choice="required"), "tool_choice"),
    (
        chat_body(
            "hi", tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}
        ),
        "tool_choice",
    ),
    (chat_body("hi", parallel_tool_calls="yes", tools=[WEATHER]), "parallel_tool_calls"),
    (chat_body("hi", response_format={"type": "xml"}), "response_format.type"),
    (
        chat_body("hi", response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
        "response_format.json_schema.name",
    ),
    (
        chat_body(
            "hi",
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": []}},
        ),
        "response_format.json_schema.schema",
    ),
    (
        chat_body(
            "hi",
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "a", "strict": "yes"},
            },
        ),
        "response_format.json_schema.strict",
    ),
    (chat_body("hi", n=0), "n"),
    (chat_body("hi", n=MAX_CHOICES + 1), "n"),
    (chat_body("hi", seed="42"), "seed"),
    (chat_body("hi", seed=True), "seed"),
    (chat_body("hi", stop=["a", "b", "c", "d", "e"]), "stop"),
    (chat_body("hi", stop=[""]), "stop"),
    (chat_body("hi", stop=7), "stop"),
    (chat_body("hi", logprobs=True, top_logprobs=21), "top_logprobs"),
    (chat_body("hi", top_logprobs=2), "top_logprobs"),
    (chat_body("hi", presence_penalty=2.5), "presence_penalty"),
    (chat_body("hi", frequency_penalty=-3), "frequency_penalty"),
    (chat_body("hi", top_p=1.5), "top_p"),
    (chat_body("hi", user=5), "user"),
    (chat_body("hi", metadata={"k": 1}), "metadata"),
    (chat_body("hi", stream_options={"include_usage": True}), "stream_options"),
    (chat_body("hi", stream=True, stream_options={"include_usage": 1}), "include_usage"),
    (with_messages({"role": "wizard", "content": "hi"}), "messages[0].role"),
    (with_messages({"role": "user"}), "messages[0].content"),
    (
        with_messages({"role": "user", "content": [{"type": "audio"}]}),
        "messages[0].content[0].type",
    ),
    (
        with_messages({"role": "system", "content": [{"type": "image_url", "image_url": {}}]}),
        "messages[0].content[0].type",
    ),
    (
        with_messages({"role": "user", "content": [{"type": "image_url", "image_url": {}}]}),
        "messages[0].content[0].image_url",
    ),
    (
        with_messages(USER, {"role": "assistant", "content": None, "tool_calls": [{"id": "x"}]}),
        "messages[1].tool_calls[0]",
    ),
    (
        with_messages(USER, {"role": "tool", "tool_call_id": "call_9", "content": "sunny"}),
        "messages[1].tool_call_id",
    ),
    (
        with_messages(
            USER,
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call_2", "content": "sunny"},
        ),
        "messages[2].tool_call_id",
    ),
]


@pytest.mark.parametrize(("body", "param"), BAD_REQUESTS, ids=[p for _, p in BAD_REQUESTS])
async def test_a_bad_field_is_a_400_naming_it(body: dict[str, Any], param: str) -> None:
    async with make_client() as client:
        response = await client.post("/us-east/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert param.rsplit(".", maxsplit=1)[-1].split("[", maxsplit=1)[0] in error["message"]


async def test_the_whole_surface_is_accepted_in_one_request() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    body = with_messages(
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}, image]},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
        tools=[WEATHER],
        tool_choice="auto",
        parallel_tool_calls=False,
        response_format={"type": "text"},
        n=2,
        seed=42,
        stop=["\n\n"],
        logprobs=True,
        top_logprobs=3,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        top_p=0.9,
        temperature=0.7,
        user="user-1",
        metadata={"team": "search"},
        max_completion_tokens=50,
        stream=False,
        some_future_field={"ignored": True},
    )
    async with make_client() as client:
        response = await client.post("/us-east/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert [c["index"] for c in response.json()["choices"]] == [0, 1]


async def test_an_image_adds_its_fixed_token_count_to_the_prompt() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    text_only = with_messages({"role": "user", "content": [{"type": "text", "text": "What?"}]})
    with_image = with_messages(
        {"role": "user", "content": [{"type": "text", "text": "What?"}, image, image]}
    )
    async with make_client() as client:
        plain = (await client.post("/us-east/v1/chat/completions", json=text_only)).json()
        pictured = (await client.post("/us-east/v1/chat/completions", json=with_image)).json()
    extra = pictured["usage"]["prompt_tokens"] - plain["usage"]["prompt_tokens"]
    assert extra == 2 * 85


async def test_tool_definitions_count_towards_prompt_tokens() -> None:
    async with make_client() as client:
        plain = (await client.post("/us-east/v1/chat/completions", json=chat_body("hi"))).json()
        tooled = (
            await client.post(
                "/us-east/v1/chat/completions",
                json=chat_body("hi", tools=[WEATHER], tool_choice="none"),
            )
        ).json()
    assert tooled["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]

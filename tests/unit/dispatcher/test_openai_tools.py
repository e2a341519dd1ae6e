"""The OpenAI-compatible client carries tools, several choices and logprobs both ways: the
request body offers them, and streamed or whole answers come back with every choice."""

import json

import httpx
import orjson

from services.dispatcher.calls import Delta, ModelRequest, ProviderAnswer
from services.dispatcher.endpoints import parse_endpoints
from services.dispatcher.providers.openai import OpenAICompatibleClient, request_body
from shared.chat import (
    Finish,
    FormatKind,
    ResponseFormat,
    Role,
    Sampling,
    ToolCall,
    ToolChoiceMode,
    ToolFunction,
    ToolSet,
    Turn,
)
from tests.unit.dispatcher.upstream import TOKENS, chunk

(ENDPOINT,) = parse_endpoints(
    "endpoints:\n  - {name: e, region: r, base_url: 'http://x/v1', models: [m]}", {}
)
WEATHER = ToolFunction(
    "get_weather", "", json.dumps({"type": "object", "properties": {"city": {"type": "string"}}})
)
CALL = ModelRequest(
    "m",
    (
        Turn(Role.USER, "Weather in Oslo?"),
        Turn(Role.ASSISTANT, "", tool_calls=(ToolCall("call_1", "get_weather", "{}"),)),
        Turn(Role.TOOL, '{"temp": 3}', tool_call_id="call_1"),
        Turn(Role.USER, "And in Rome?"),
    ),
    Sampling(n=2, seed=11, logprobs=True, top_logprobs=1),
    response_format=ResponseFormat(FormatKind.JSON_SCHEMA, '{"type": "object"}', "reply", True),
    tools=ToolSet((WEATHER,), ToolChoiceMode.REQUIRED, parallel_tool_calls=False),
    end_user="user-7",
)


def client(handler) -> OpenAICompatibleClient:
    return OpenAICompatibleClient(
        httpx.AsyncClient(transport=httpx.MockTransport(handler)), TOKENS, env={}
    )


def test_the_body_offers_tools_and_replays_the_round_trip() -> None:
    body = request_body(CALL, stream=True)
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"},
            }
        ],
    }
    assert body["messages"][2] == {
        "role": "tool",
        "content": '{"temp": 3}',
        "tool_call_id": "call_1",
    }
    assert (body["n"], body["seed"], body["logprobs"], body["top_logprobs"]) == (2, 11, True, 1)
    assert body["response_format"]["json_schema"] == {
        "name": "reply",
        "schema": {"type": "object"},
        "strict": True,
    }
    assert body["user"] == "user-7"


async def test_a_streamed_tool_call_and_a_second_choice_come_back_whole() -> None:
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["body"] = orjson.loads(request.content)
        sse = b"".join(
            chunk({"choices": [choice]})
            for choice in (
                {"index": 0, "delta": {"role": "assistant", "content": None}},
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_2",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":'},
                            }
                        ]
                    },
                },
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Rome"}'}}]},
                },
                {"index": 1, "delta": {"content": "Sunny."}},
                {"index": 0, "delta": {}, "finish_reason": "tool_calls"},
                {"index": 1, "delta": {}, "finish_reason": "stop"},
            )
        )
        sse += chunk({"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 9}})
        sse += b"data: [DONE]\n\n"
        return httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"})

    events = [e async for e in client(handler).stream(ENDPOINT, CALL, 5)]
    deltas = [e for e in events if isinstance(e, Delta)]
    assert deltas[0].piece is not None and deltas[0].piece.tool_calls[0].id == "call_2"
    assert deltas[0].text == 'get_weather{"city":'
    assert deltas[2].text == "Sunny."
    assert deltas[2].piece is not None and deltas[2].piece.index == 1
    (answer,) = [e for e in events if isinstance(e, ProviderAnswer)]
    assert answer.finish is Finish.TOOL_CALLS and answer.content == ""
    first, second = answer.choices
    assert first.tool_calls == (ToolCall("call_2", "get_weather", '{"city":"Rome"}'),)
    assert (second.content, second.finish) == ("Sunny.", Finish.STOP)
    assert answer.usage.output_tokens == 9


async def test_a_whole_body_answer_keeps_every_choice() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "refusal": "I can't share that.",
    }
    body = {
        "model": "m",
        "choices": [
            {"index": 0, "message": message, "finish_reason": "stop"},
            {
                "index": 1,
                "message": {"role": "assistant", "content": "{}"},
                "finish_reason": "stop",
            },
        ],
    }
    events = [
        e async for e in client(lambda r: httpx.Response(200, json=body)).stream(ENDPOINT, CALL, 5)
    ]
    answer = events[-1]
    assert isinstance(answer, ProviderAnswer)
    assert answer.choices[0].refusal == "I can't share that." and answer.choices[1].content == "{}"
    pieces = [e.piece for e in events if isinstance(e, Delta) and e.piece is not None]
    assert pieces[0].refusal == "I can't share that." and pieces[1].content == "{}"

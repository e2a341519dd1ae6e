"""Streams framed exactly as OpenAI streams (issue 15, Must show 4): the first chunk of each
choice carries the role; content, tool-call fragments and refusals as deltas; each choice's
finish_reason on its last chunk, the last one with Sluice's `sluice` field; a usage chunk only
with `stream_options.include_usage`; then `[DONE]`. Pieces of a tier that may still be
rejected are never shown."""

from __future__ import annotations

from typing import Any

import httpx
import httpx2
import openai
import orjson
from opentelemetry.sdk.trace import TracerProvider

from services.router.model import ChatRequest, TierDelta
from shared.chat import Choice, ChoiceDelta, Finish, TokenLogprob, ToolCall, ToolCallDelta
from tests.unit.router.door_rig import (
    API_KEY,
    HEADERS,
    ScriptedPipeline,
    door_app,
    http_client,
    result_for,
)

USER: Any = [{"role": "user", "content": "weather in Lisbon?"}]
LAST = 3  # tier index of `top`, the last tier of class chat
CALL = ToolCall("call_a", "get_weather", '{"city": "Lisbon"}')


def live_text(request: ChatRequest) -> list[Any]:
    return [
        TierDelta(1, LAST, "Hello"),
        TierDelta(1, LAST, " there"),
        result_for(request, (Choice(0, "Hello there", Finish.STOP),), tier=LAST),
    ]


async def stream(pipeline: ScriptedPipeline, **extra: Any) -> tuple[httpx.Response, list[Any]]:
    """The response and its SSE payloads, `[DONE]` as the string "[DONE]"."""
    body = {"messages": USER, "stream": True, **extra}
    tracer = TracerProvider().get_tracer("tests")
    async with http_client(door_app(pipeline, tracer=tracer)) as client:
        response = await client.post("/v1/chat/completions", json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    lines = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
    return response, [line if line == "[DONE]" else orjson.loads(line) for line in lines]


def deltas(chunks: list[Any], index: int = 0) -> list[dict[str, Any]]:
    return [
        choice["delta"]
        for chunk in chunks[:-1]
        for choice in chunk["choices"]
        if choice["index"] == index
    ]


async def test_text_streams_with_role_first_and_no_usage_chunk_unasked() -> None:
    response, chunks = await stream(ScriptedPipeline(live_text))
    assert chunks[-1] == "[DONE]"
    assert all(chunk["choices"] for chunk in chunks[:-1]), "no empty choices unless asked"
    assert all("usage" not in chunk for chunk in chunks[:-1])
    pieces = deltas(chunks)
    assert pieces[0]["role"] == "assistant" and all("role" not in d for d in pieces[1:])
    assert "".join(d.get("content") or "" for d in pieces) == "Hello there"
    final = chunks[-2]
    assert final["choices"][0]["finish_reason"] == "stop" and final["choices"][0]["delta"] == {}
    assert final["sluice"]["tier"] == LAST
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-2]] == [None] * (len(chunks) - 2)
    assert response.headers["x-sluice-policy-version"] == "test-1"
    assert len(response.headers["x-sluice-trace-id"]) == 32
    assert final["sluice"]["trace_id"] == response.headers["x-sluice-trace-id"]


async def test_the_usage_chunk_comes_only_with_include_usage() -> None:
    _, chunks = await stream(ScriptedPipeline(live_text), stream_options={"include_usage": True})
    usage = chunks[-2]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 1
    assert all(chunk["usage"] is None for chunk in chunks[:-2])
    assert chunks[-3]["choices"][0]["finish_reason"] == "stop" and "sluice" in chunks[-3]


async def test_a_rejected_tier_is_never_shown_and_the_accepted_one_is() -> None:
    def escalating(request: ChatRequest) -> list[Any]:
        return [
            TierDelta(1, 1, "I'm sorry, I can't"),
            TierDelta(2, 2, "Lisbon is"),  # tier 2 is held, then accepted
            TierDelta(2, 2, " sunny"),
            result_for(request, (Choice(0, "Lisbon is sunny", Finish.STOP),), tier=2),
        ]

    _, chunks = await stream(ScriptedPipeline(escalating))
    text = "".join(d.get("content") or "" for d in deltas(chunks))
    assert text == "Lisbon is sunny"
    assert chunks[-2]["sluice"]["tier"] == 2


async def test_tool_call_fragments_of_a_judged_tier_are_held_back() -> None:
    def cheap_calls(request: ChatRequest) -> list[Any]:
        fragments = (ToolCallDelta(0, "call_bad", "get_wether", '{"ci'),)
        return [
            TierDelta(1, 1, "", ChoiceDelta(0, tool_calls=fragments)),
            result_for(request, (Choice(0, "", Finish.TOOL_CALLS, tool_calls=(CALL,)),), tier=2),
        ]

    _, chunks = await stream(ScriptedPipeline(cheap_calls))
    pieces = deltas(chunks)
    assert "get_wether" not in orjson.dumps(chunks[:-1]).decode()
    assert pieces[0]["role"] == "assistant" and pieces[0]["content"] is None
    assert pieces[0]["tool_calls"] == [
        {
            "index": 0,
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
        }
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def live_calls(request: ChatRequest) -> list[Any]:
    """The last tier streams two parallel calls as OpenAI does: id and name first, then the
    arguments in pieces."""
    second = ToolCall("call_b", "get_time", '{"city": "Lisbon"}')
    fragments = [
        ToolCallDelta(0, "call_a", "get_weather", ""),
        ToolCallDelta(0, arguments='{"city": '),
        ToolCallDelta(0, arguments='"Lisbon"}'),
        ToolCallDelta(1, "call_b", "get_time", ""),
        ToolCallDelta(1, arguments='{"city": "Lisbon"}'),
    ]
    events: list[Any] = [TierDelta(1, LAST, "", ChoiceDelta(0, tool_calls=(f,))) for f in fragments]
    choice = Choice(0, "", Finish.TOOL_CALLS, tool_calls=(CALL, second))
    return [*events, result_for(request, (choice,), tier=LAST)]


async def test_streamed_tool_calls_are_fragments_with_index_id_and_name_first() -> None:
    _, chunks = await stream(ScriptedPipeline(live_calls))
    fragments = [f for d in deltas(chunks) for f in d.get("tool_calls", [])]
    assert fragments[0] == {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert fragments[1] == {"index": 0, "function": {"arguments": '{"city": '}}
    assert [f["index"] for f in fragments] == [0, 0, 0, 1, 1]


def sdk(pipeline: ScriptedPipeline) -> openai.AsyncOpenAI:
    # The SDK's own HTTP stack (httpx2), so nothing but the transport differs from real use.
    transport = httpx2.ASGITransport(app=door_app(pipeline))
    return openai.AsyncOpenAI(
        base_url="http://door/v1",
        api_key=API_KEY,
        http_client=httpx2.AsyncClient(transport=transport),
        max_retries=0,
    )


async def test_the_sdk_stream_helper_reassembles_parallel_tool_calls() -> None:
    tools: Any = [
        {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
        for name in ("get_weather", "get_time")
    ]
    async with sdk(ScriptedPipeline(live_calls)).chat.completions.stream(
        model="auto",
        messages=USER,
        tools=tools,
    ) as events:
        final = await events.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_a", "get_weather", '{"city": "Lisbon"}'),
        ("call_b", "get_time", '{"city": "Lisbon"}'),
    ]
    assert final.choices[0].finish_reason == "tool_calls"


async def test_the_plain_sdk_loop_never_meets_empty_choices() -> None:
    client = sdk(ScriptedPipeline(live_text))
    text = ""
    async for chunk in await client.chat.completions.create(
        model="auto", messages=USER, stream=True
    ):
        text += chunk.choices[0].delta.content or ""
    assert text == "Hello there"


async def test_several_choices_each_open_with_the_role_and_close_with_a_finish() -> None:
    def two(request: ChatRequest) -> list[Any]:
        return [
            TierDelta(1, LAST, "", ChoiceDelta(0, content="A")),
            TierDelta(1, LAST, "", ChoiceDelta(1, content="B")),
            TierDelta(1, LAST, "", ChoiceDelta(0, content="a")),
            result_for(
                request, (Choice(0, "Aa", Finish.STOP), Choice(1, "B", Finish.LENGTH)), tier=LAST
            ),
        ]

    _, chunks = await stream(ScriptedPipeline(two), n=2)
    for index, text in ((0, "Aa"), (1, "B")):
        pieces = deltas(chunks, index)
        assert [("role" in d) for d in pieces if d] == [True] + [False] * (
            len([d for d in pieces if d]) - 1
        )
        assert "".join(d.get("content") or "" for d in pieces) == text
    finishes = [(c["choices"][0]["index"], c["choices"][0]["finish_reason"]) for c in chunks[-3:-1]]
    assert finishes == [(0, "stop"), (1, "length")]
    assert "sluice" in chunks[-2] and "sluice" not in chunks[-3]


async def test_streamed_logprobs_when_asked() -> None:
    def scored(request: ChatRequest) -> list[Any]:
        entry = TokenLogprob("Hi", -0.5)
        return [
            TierDelta(1, LAST, "", ChoiceDelta(0, content="Hi", logprobs=(entry,))),
            result_for(request, (Choice(0, "Hi", Finish.STOP, logprobs=(entry,)),), tier=LAST),
        ]

    _, chunks = await stream(ScriptedPipeline(scored), logprobs=True)
    first = chunks[0]["choices"][0]
    assert first["logprobs"]["content"] == [
        {"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": []}
    ]


async def test_a_cached_or_held_answer_with_no_live_pieces_is_sent_whole() -> None:
    def silent(request: ChatRequest) -> list[Any]:
        return [result_for(request, (Choice(0, "", Finish.STOP, refusal="No."),), tier=1)]

    _, chunks = await stream(ScriptedPipeline(silent))
    assert deltas(chunks)[0] == {"role": "assistant", "content": None, "refusal": "No."}

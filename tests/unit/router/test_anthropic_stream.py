"""Answers and streams in Anthropic's shape (issue 19, Must shows 1 and 2): a message body with
text and tool_use blocks, stop_reason, usage and Sluice's cost; the event sequence message_start,
ping, content_block_start/delta/stop (text_delta, input_json_delta), message_delta with the
stop reason and usage, message_stop; a cheap tier's pieces held back exactly as the OpenAI
stream holds them; errors as Anthropic's error event and body with matching statuses."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider

from services.router.http_limits import DoorLimits
from services.router.model import ChatRequest, TierDelta
from shared.chat import Choice, ChoiceDelta, Finish, ToolCall, ToolCallDelta
from shared.errors import BudgetExhausted, Unavailable
from tests.unit.router.door_rig import (
    InstantPipeline,
    ScriptedPipeline,
    door_app,
    http_client,
    result_for,
)
from tests.unit.router.test_anthropic_request import HEADERS, USER

LAST = 3  # tier index of `top`, the last tier of class chat
CALL = ToolCall("toolu_a", "get_weather", '{"city": "Lisbon"}')
BODY: Any = {"model": "chat", "max_tokens": 50, "messages": [USER]}


async def events(pipeline: ScriptedPipeline | InstantPipeline) -> list[tuple[str, Any]]:
    tracer = TracerProvider().get_tracer("tests")
    async with http_client(door_app(pipeline, tracer=tracer)) as client:
        response = await client.post("/v1/messages", json={**BODY, "stream": True}, headers=HEADERS)
    assert response.status_code == 200, response.text
    assert response.headers["x-sluice-trace-id"]
    frames = [frame for frame in response.text.split("\n\n") if frame]
    parsed = []
    for frame in frames:
        name, data = frame.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        payload = orjson.loads(data[6:])
        assert payload["type"] == name[7:]
        parsed.append((name[7:], payload))
    return parsed


def names(stream: list[tuple[str, Any]]) -> list[str]:
    return [name for name, _ in stream]


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        (Finish.STOP, "end_turn"),
        (Finish.LENGTH, "max_tokens"),
        (Finish.TOOL_CALLS, "tool_use"),
        (Finish.CONTENT_FILTER, "refusal"),
    ],
)
async def test_a_whole_message_has_blocks_stop_reason_usage_and_cost(
    finish: Finish, reason: str
) -> None:
    choice = Choice(0, "Let me check.", finish, (CALL,))
    pipeline = ScriptedPipeline(lambda request: [result_for(request, (choice,))])
    async with http_client(door_app(pipeline)) as client:
        response = await client.post("/v1/messages", json=BODY, headers=HEADERS)
    assert response.status_code == 200
    body = response.json()
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", "cheap")
    assert body["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Lisbon"}},
    ]
    assert body["stop_reason"] == reason and body["stop_sequence"] is None
    assert body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] == 1
    assert body["sluice"]["tier"] == 1 and "stages" in body["sluice"]
    assert response.headers["x-sluice-tier"] == "1" and "x-sluice-cost-usd" in response.headers


def fragment(**fields: str) -> TierDelta:
    return TierDelta(1, LAST, "", ChoiceDelta(0, tool_calls=(ToolCallDelta(0, **fields),)))


def live(request: ChatRequest) -> list[Any]:
    return [
        TierDelta(1, LAST, "Hello"),
        TierDelta(1, LAST, " there", ChoiceDelta(0, content=" there")),
        fragment(id="toolu_a", name="get_weather"),
        fragment(arguments='{"city": '),
        fragment(arguments='"Lisbon"}'),
        result_for(request, (Choice(0, "Hello there", Finish.TOOL_CALLS, (CALL,)),), tier=LAST),
    ]


async def test_the_last_tier_streams_in_anthropics_event_sequence() -> None:
    stream = await events(ScriptedPipeline(live))
    assert names(stream) == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    start = stream[0][1]["message"]
    assert start["model"] == "top" and start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] > 0
    assert stream[2][1]["content_block"] == {"type": "text", "text": ""}
    assert [p["delta"]["text"] for n, p in stream[3:5]] == ["Hello", " there"]
    tool = stream[6][1]
    assert tool["index"] == 1 and tool["content_block"]["type"] == "tool_use"
    assert tool["content_block"]["id"] == "toolu_a" and tool["content_block"]["input"] == {}
    pieces = [p["delta"] for _, p in stream[7:9]]
    assert all(d["type"] == "input_json_delta" for d in pieces)
    assert "".join(d["partial_json"] for d in pieces) == '{"city": "Lisbon"}'
    delta = stream[10][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 1 and delta["sluice"]["tier"] == LAST


async def test_a_cheap_tiers_pieces_are_held_back_and_its_answer_sent_whole() -> None:
    def cheap(request: ChatRequest) -> list[Any]:
        return [
            TierDelta(1, 1, "rejected draft"),
            TierDelta(2, 2, "accepted"),
            TierDelta(2, 2, " answer"),
            result_for(request, (Choice(0, "accepted answer", Finish.STOP),), tier=2),
        ]

    stream = await events(ScriptedPipeline(cheap))
    texts = [p["delta"]["text"] for n, p in stream if n == "content_block_delta"]
    assert texts == ["accepted answer"]
    assert stream[0][1]["message"]["model"] == "mid"
    assert stream[-2][1]["delta"]["stop_reason"] == "end_turn"


async def test_a_failure_mid_stream_is_anthropics_error_event() -> None:
    stream = await events(InstantPipeline(Unavailable("dispatcher down at 10.0.0.7")))
    assert names(stream) == ["error"]
    error = stream[0][1]["error"]
    assert error["type"] == "overloaded_error" and "10.0.0.7" not in error["message"]


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (Unavailable("x"), 529, "overloaded_error"),
        (BudgetExhausted("spent"), 429, "rate_limit_error"),
        (RuntimeError("bug"), 500, "api_error"),
    ],
)
async def test_errors_have_anthropics_statuses_and_shape(
    error: Exception, status: int, kind: str
) -> None:
    async with http_client(door_app(InstantPipeline(error))) as client:
        response = await client.post("/v1/messages", json=BODY, headers=HEADERS)
    assert response.status_code == status
    assert response.json()["type"] == "error" and response.json()["error"]["type"] == kind


async def test_unknown_paths_methods_and_oversized_bodies_answer_in_anthropics_shape() -> None:
    app = door_app(limits=DoorLimits(max_body_bytes=300))
    async with http_client(app) as client:
        missing = await client.post("/v1/messages/count_tokens", json=BODY, headers=HEADERS)
        wrong = await client.get("/v1/messages", headers=HEADERS)
        big = await client.post("/v1/messages", json={**BODY, "system": "x" * 400}, headers=HEADERS)
        openai_big = await client.post("/v1/chat/completions", json={"x": "x" * 400})
    assert (missing.status_code, missing.json()["error"]["type"]) == (404, "not_found_error")
    assert wrong.status_code == 405 and wrong.json()["type"] == "error"
    assert (big.status_code, big.json()["error"]["type"]) == (413, "request_too_large")
    assert openai_big.status_code == 413 and "type" not in openai_big.json()


async def test_a_stop_at_a_named_stop_sequence_says_which_whole_and_streamed() -> None:
    choice = Choice(0, "The capital of France is ", Finish.STOP, stop_sequence="Paris")
    pipeline = ScriptedPipeline(lambda request: [result_for(request, (choice,))])
    async with http_client(door_app(pipeline)) as client:
        body = (await client.post("/v1/messages", json=BODY, headers=HEADERS)).json()
    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "Paris")
    stream = await events(ScriptedPipeline(lambda request: [result_for(request, (choice,))]))
    [delta] = [payload for name, payload in stream if name == "message_delta"]
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "Paris"}

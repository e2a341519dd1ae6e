"""The simulator serves Anthropic's Messages API at `/<region>/v1/messages` (issue 19, Must
show 3): whole and streamed answers, tools both ways, the stop reasons end_turn, max_tokens,
stop_sequence and tool_use, usage, and errors in Anthropic's shape."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import orjson

from tests.unit.simulator.helpers import make_client

WEATHER: Any = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "max_tokens": 300,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


async def post(client: httpx.AsyncClient, payload: dict[str, Any]) -> httpx.Response:
    return await client.post("/us-east/v1/messages", json=payload)


async def test_a_whole_message_with_usage_and_end_turn() -> None:
    async with make_client() as client:
        response = await post(client, body("Explain write-ahead logs.", system="Be brief."))
    assert response.status_code == 200
    message = response.json()
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"][0]["type"] == "text" and message["content"][0]["text"]
    assert message["stop_reason"] == "end_turn" and message["stop_sequence"] is None
    assert message["usage"]["input_tokens"] > 0 and message["usage"]["output_tokens"] > 0


async def test_stop_reasons_max_tokens_and_stop_sequence() -> None:
    async with make_client() as client:
        cut = (await post(client, body("Explain consensus.", max_tokens=2))).json()
        whole = (await post(client, body("Explain consensus."))).json()
        word = whole["content"][0]["text"].split()[3]
        stopped = (await post(client, body("Explain consensus.", stop_sequences=[word]))).json()
    assert cut["stop_reason"] == "max_tokens" and cut["usage"]["output_tokens"] == 2
    assert stopped["stop_reason"] == "stop_sequence" and stopped["stop_sequence"] == word
    assert word not in stopped["content"][0]["text"]


async def test_a_tool_round_trip() -> None:
    async with make_client() as client:
        first = (await post(client, body("What is the weather in Lisbon?", tools=[WEATHER]))).json()
        (call,) = first["content"]
        assert first["stop_reason"] == "tool_use"
        assert call["type"] == "tool_use" and call["input"] == {"city": "Lisbon"}
        result = {"type": "tool_result", "tool_use_id": call["id"], "content": "21 C and sunny"}
        messages = [
            {"role": "user", "content": "What is the weather in Lisbon?"},
            {"role": "assistant", "content": first["content"]},
            {"role": "user", "content": [result]},
        ]
        second = (await post(client, {**body(""), "messages": messages, "tools": [WEATHER]})).json()
    assert second["stop_reason"] == "end_turn"
    assert "21 C" in second["content"][0]["text"]


async def test_a_stream_reassembles_with_the_sdk_accumulator() -> None:
    from anthropic.lib.streaming._messages import accumulate_event

    async with make_client() as client:
        response = await post(
            client, body("What is the weather in Lisbon?", tools=[WEATHER], stream=True)
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [
        orjson.loads(line[6:]) for line in response.text.split("\n") if line.startswith("data: ")
    ]
    assert [e["type"] for e in events[:2]] == ["message_start", "ping"]
    assert events[-1]["type"] == "message_stop"
    snapshot = None
    buffers: dict[int, bytes] = {}
    for event in events:
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)
    assert isinstance(snapshot, anthropic.types.Message)
    assert snapshot.stop_reason == "tool_use"
    assert snapshot.content[0].input == {"city": "Lisbon"}  # type: ignore[union-attr]


async def test_an_image_block_is_counted() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    content = [{"type": "text", "text": "What is this?"}, image]
    async with make_client() as client:
        plain = (await post(client, body("What is this?"))).json()
        pictured = (
            await post(client, {**body(""), "messages": [{"role": "user", "content": content}]})
        ).json()
    assert pictured["usage"]["input_tokens"] > plain["usage"]["input_tokens"]


async def test_errors_are_in_anthropics_shape() -> None:
    async with make_client() as client:
        missing = await post(
            client, {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
        )
        unknown = await post(client, body("x", model="claude-9"))
        await client.post("/admin/regions/us-east", json={"outage": True})
        down = await post(client, body("x"))
    assert missing.status_code == 400 and "max_tokens" in missing.json()["error"]["message"]
    assert missing.json()["type"] == "error"
    assert (unknown.status_code, unknown.json()["error"]["type"]) == (404, "not_found_error")
    assert (down.status_code, down.json()["error"]["type"]) == (529, "overloaded_error")

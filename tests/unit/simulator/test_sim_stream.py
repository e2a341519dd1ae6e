"""Streaming chat completions: SSE framing, chunk order, the usage chunk and pacing."""

from __future__ import annotations

from typing import Any

from tests.unit.simulator.helpers import RecordingSleep, chat, make_client, sse_payloads

PROMPT = "Summarise the history of the printing press."
WITH_USAGE: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}


async def test_stream_is_sse_with_role_content_finish_usage_and_done():
    async with make_client() as client:
        plain = (await chat(client, PROMPT, model="deepseek-v4-flash")).json()
        response = await chat(client, PROMPT, model="deepseek-v4-flash", **WITH_USAGE)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = payloads[:-1]
    assert all(isinstance(c, dict) and c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    first, *content, finish, usage = chunks
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert len(content) > 3  # a few words per chunk, not one blob
    text = "".join(c["choices"][0]["delta"]["content"] for c in content)
    assert text == plain["choices"][0]["message"]["content"]
    assert all(c["choices"][0]["finish_reason"] is None for c in content)
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["choices"][0]["delta"] == {}
    assert usage["choices"] == []
    assert usage["usage"] == plain["usage"]


async def test_stream_sends_usage_only_when_stream_options_ask_for_it():
    async with make_client() as client:
        with_option = await chat(client, PROMPT, **WITH_USAGE)
        without = await chat(client, PROMPT, stream=True)
        declined = await chat(client, PROMPT, stream=True, stream_options={"include_usage": False})
    assert sse_payloads(with_option.text)[-2]["choices"] == []
    assert "usage" in sse_payloads(with_option.text)[-2]
    for response in (without, declined):
        chunks = sse_payloads(response.text)[:-1]
        # Every chunk has a choice, so `chunk.choices[0]` never raises in a plain loop.
        assert all(chunk["choices"] for chunk in chunks)
        assert not any("usage" in chunk for chunk in chunks)
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_stream_honours_max_tokens():
    async with make_client() as client:
        response = await chat(client, PROMPT, max_tokens=7, **WITH_USAGE)
    *_, finish, usage, _done = sse_payloads(response.text)
    assert finish["choices"][0]["finish_reason"] == "length"
    assert usage["usage"]["completion_tokens"] == 7


async def test_stream_waits_ttft_once_then_per_chunk_token_time():
    sleep = RecordingSleep()
    async with make_client(latency_scale=1.0, sleep=sleep) as client:
        response = await chat(client, PROMPT, region="ap-south", **WITH_USAGE)
    payloads = sse_payloads(response.text)
    content_chunks = len(payloads) - 4  # role, finish, usage and [DONE] carry no content
    completion_tokens = payloads[-2]["usage"]["completion_tokens"]
    ttft, *per_chunk = sleep.calls
    assert len(per_chunk) == content_chunks
    # ap-south: 0.08 ms per token, spread evenly over the chunks.
    assert abs(sum(per_chunk) - 0.08 / 1000 * completion_tokens) < 1e-9
    assert 0.005 < ttft < 0.5


async def test_latency_scale_multiplies_the_waits():
    slow, fast = RecordingSleep(), RecordingSleep()
    async with make_client(latency_scale=1.0, sleep=slow, seed=3) as client:
        await chat(client, PROMPT)
    async with make_client(latency_scale=0.5, sleep=fast, seed=3) as client:
        await chat(client, PROMPT)
    assert abs(fast.calls[0] - slow.calls[0] / 2) < 1e-12

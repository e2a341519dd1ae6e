"""The OpenAI-compatible client: request bodies, Retry-After forms, JSON answers to a stream
request, error objects inside a stream."""

import asyncio
import email.utils

import httpx
import orjson
import pytest

from services.dispatcher.calls import Delta, ModelRequest, ProviderAnswer
from services.dispatcher.endpoints import parse_endpoints
from services.dispatcher.providers.openai import (
    OpenAICompatibleClient,
    UpstreamError,
    request_body,
    retry_after_s,
)
from shared.chat import FormatKind, ResponseFormat, Sampling
from tests.unit.dispatcher.upstream import CALL, TOKENS, chunk

(ENDPOINT,) = parse_endpoints(
    "endpoints:\n  - {name: e, region: r, base_url: 'http://x/v1', models: [m]}", {}
)


def client(handler) -> OpenAICompatibleClient:
    return OpenAICompatibleClient(
        httpx.AsyncClient(transport=httpx.MockTransport(handler)), TOKENS, env={}
    )


def test_body_asks_for_a_stream_with_usage_and_forwards_sampling_and_format() -> None:
    schema = '{"type": "object"}'
    call = ModelRequest(
        "m",
        CALL.turns,
        Sampling(temperature=0.0, top_p=0.5, max_tokens=8, stop=("\n",)),
        response_format=ResponseFormat(FormatKind.JSON_SCHEMA, schema),
    )
    body = request_body(call, stream=True)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["stop"]) == (
        0.0,
        0.5,
        8,
        ["\n"],
    )
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    plain = request_body(CALL, stream=False)
    assert "response_format" not in plain and "stream_options" not in plain


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after_s(httpx.Headers({"retry-after": "7"})) == 7.0
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after_s(httpx.Headers({"retry-after": date}), now=1_000_000) == 30.0
    assert retry_after_s(httpx.Headers({"retry-after": "soon"})) is None
    assert retry_after_s(httpx.Headers()) is None


async def test_a_json_answer_to_a_stream_request_is_accepted() -> None:
    body = {
        "model": "m-2025",
        "choices": [{"message": {"content": "whole"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 1, "cost": 0.5},
    }
    events = [
        e async for e in client(lambda r: httpx.Response(200, json=body)).stream(ENDPOINT, CALL, 5)
    ]
    assert events[0] == Delta("whole")
    answer = events[1]
    assert isinstance(answer, ProviderAnswer)
    assert (answer.model, answer.finish.value, answer.reported_cost_usd) == (
        "m-2025",
        "length",
        0.5,
    )


async def test_an_error_object_inside_a_stream_is_a_retryable_failure() -> None:
    sse = chunk({"choices": [{"delta": {"content": "par"}}]}) + chunk(
        {"error": {"message": "model overloaded"}}
    )
    handler = lambda r: httpx.Response(  # noqa: E731
        200, content=sse, headers={"content-type": "text/event-stream"}
    )
    seen = []
    with pytest.raises(UpstreamError, match="model overloaded") as caught:
        async for event in client(handler).stream(ENDPOINT, CALL, 5):
            seen.append(event)
    assert seen == [Delta("par")] and caught.value.retryable


async def test_malformed_chunks_and_bodies_are_protocol_errors() -> None:
    broken = lambda r: httpx.Response(  # noqa: E731
        200, content=b"data: {nope\n\n", headers={"content-type": "text/event-stream"}
    )
    with pytest.raises(UpstreamError, match="malformed SSE chunk"):
        [e async for e in client(broken).stream(ENDPOINT, CALL, 5)]
    garbage = lambda r: httpx.Response(200, json={"choices": []})  # noqa: E731
    with pytest.raises(UpstreamError, match="malformed completion body"):
        [e async for e in client(garbage).stream(ENDPOINT, CALL, 5)]


def test_error_kinds() -> None:
    assert UpstreamError("e", "http", "x", status=500).counts_against_endpoint
    assert UpstreamError("e", "timeout", "x").counts_against_endpoint
    limited = UpstreamError("e", "http", "x", status=429)
    assert limited.retryable and not limited.counts_against_endpoint
    assert not UpstreamError("e", "http", "x", status=422).retryable
    assert orjson.loads(orjson.dumps({"ok": True}))


async def test_a_stream_that_stops_without_finishing_is_a_cut() -> None:
    cut = chunk({"choices": [{"delta": {"content": "half"}}]})
    handler = lambda r: httpx.Response(  # noqa: E731
        200, content=cut, headers={"content-type": "text/event-stream"}
    )
    with pytest.raises(UpstreamError, match="stream ended before the answer finished"):
        [e async for e in client(handler).stream(ENDPOINT, CALL, 5)]
    # A finish_reason without [DONE] is a finished answer, though.
    whole = cut + chunk({"choices": [{"delta": {}, "finish_reason": "stop"}]})
    handler = lambda r: httpx.Response(  # noqa: E731
        200, content=whole, headers={"content-type": "text/event-stream"}
    )
    events = [e async for e in client(handler).stream(ENDPOINT, CALL, 5)]
    assert isinstance(events[-1], ProviderAnswer) and events[-1].content == "half"


async def test_the_body_is_read_to_its_end_after_done_so_the_connection_is_kept() -> None:
    """httpx closes a connection whose response was left half-read; reading on past [DONE]
    (here: to a trailing comment line) returns it to the pool instead."""
    read_to_end: list[bool] = []

    async def body():
        yield chunk({"choices": [{"delta": {"content": "hi"}, "finish_reason": "stop"}]})
        yield b"data: [DONE]\n\n"
        yield b": the end\n\n"
        read_to_end.append(True)

    handler = lambda r: httpx.Response(  # noqa: E731
        200, content=body(), headers={"content-type": "text/event-stream"}
    )
    events = [e async for e in client(handler).stream(ENDPOINT, CALL, 5)]
    assert isinstance(events[-1], ProviderAnswer) and events[-1].content == "hi"
    assert read_to_end == [True]


async def test_a_body_left_open_after_done_costs_the_connection_not_the_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("services.dispatcher.providers.openai._DRAIN_AFTER_DONE_S", 0.05)

    async def body():
        yield chunk({"choices": [{"delta": {"content": "hi"}, "finish_reason": "stop"}]})
        yield b"data: [DONE]\n\n"
        await asyncio.sleep(30)  # never ends the body

    handler = lambda r: httpx.Response(  # noqa: E731
        200, content=body(), headers={"content-type": "text/event-stream"}
    )
    stream = client(handler).stream(ENDPOINT, CALL, 5)
    events = await asyncio.wait_for(_collect(stream), timeout=5)
    assert isinstance(events[-1], ProviderAnswer) and events[-1].content == "hi"


async def _collect(stream):
    return [e async for e in stream]

"""Dispatcher: endpoint order, failover, non-retryable errors, streaming and cost, against a
real OpenAICompatibleClient speaking HTTP to an httpx MockTransport."""

import time

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider

from services.dispatcher.calls import Delta, DispatchResult, ModelRequest
from services.dispatcher.dispatcher import Dispatcher, DispatchPolicy
from services.dispatcher.endpoints import parse_endpoints
from services.dispatcher.providers.openai import OpenAICompatibleClient
from shared.chat import Finish, Role, Sampling, Turn
from shared.errors import DeadlineExceeded, InvalidRequest, Unavailable
from shared.pricing import parse_catalogue
from shared.tokens import TokenCounter

ENDPOINTS = """
endpoints:
  - {name: us, region: us-east, base_url: 'http://sim/us-east/v1', models: [m]}
  - {name: eu, region: eu-west, base_url: 'http://sim/eu-west/v1', models: [m]}
"""
CATALOGUE = parse_catalogue({"models": {"m": {"input": 1.0, "output": 2.0}}})
CALL = ModelRequest("m", (Turn(Role.USER, "hi"),), Sampling(max_tokens=16), tier=1)


def completion(content: str = "hello", usage: dict | None = None) -> dict:
    return {
        "model": "m",
        "choices": [{"message": {"content": content}, "finish_reason": "stop"}],
        "usage": usage or {"prompt_tokens": 1000, "completion_tokens": 500},
    }


def build(handler) -> tuple[Dispatcher, list[str]]:
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path.split("/")[1])
        return handler(request)

    client = OpenAICompatibleClient(
        httpx.AsyncClient(transport=httpx.MockTransport(record)), TokenCounter(), env={}
    )
    dispatcher = Dispatcher(
        parse_endpoints(ENDPOINTS, {}),
        client,
        CATALOGUE,
        TracerProvider().get_tracer("t"),
        DispatchPolicy(local_region="us-east", attempt_timeout_s=5, eject_after_failures=1),
    )
    return dispatcher, seen


async def test_answers_from_the_local_region_and_prices_usage() -> None:
    dispatcher, seen = build(lambda r: httpx.Response(200, json=completion()))
    result = await dispatcher.dispatch(CALL, None)
    assert seen == ["us-east"]
    assert (result.region, result.attempts, result.answer.content) == ("us-east", 1, "hello")
    assert result.cost_nano_usd == 1000 * 1000 + 500 * 2000


async def test_fails_over_to_the_next_region_and_ejects_the_bad_one() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "us-east" in request.url.path:
            return httpx.Response(503, json={"error": {"message": "region down"}})
        return httpx.Response(200, json=completion())

    dispatcher, seen = build(handler)
    result = await dispatcher.dispatch(CALL, None)
    assert seen == ["us-east", "eu-west"] and result.region == "eu-west" and result.attempts == 2
    # us-east is now ejected, so the next call goes straight to eu-west.
    await dispatcher.dispatch(CALL, None)
    assert seen[2:] == ["eu-west"]


async def test_preferred_region_goes_first() -> None:
    dispatcher, seen = build(lambda r: httpx.Response(200, json=completion()))
    await dispatcher.dispatch(ModelRequest("m", CALL.turns, CALL.sampling, "eu-west"), None)
    assert seen == ["eu-west"]


async def test_all_regions_down_is_unavailable_with_each_reason() -> None:
    dispatcher, _ = build(lambda r: httpx.Response(500, text="boom"))
    with pytest.raises(Unavailable, match="us: http 500: boom; eu: http 500: boom"):
        await dispatcher.dispatch(CALL, None)


async def test_client_errors_are_not_retried() -> None:
    dispatcher, seen = build(
        lambda r: httpx.Response(404, json={"error": {"message": "model m not found"}})
    )
    with pytest.raises(InvalidRequest, match="model m not found"):
        await dispatcher.dispatch(CALL, None)
    assert seen == ["us-east"]


async def test_unknown_model_and_expired_deadline() -> None:
    dispatcher, _ = build(lambda r: httpx.Response(200, json=completion()))
    with pytest.raises(InvalidRequest, match="not served"):
        await dispatcher.dispatch(ModelRequest("x", CALL.turns, CALL.sampling), None)
    with pytest.raises(DeadlineExceeded):
        await dispatcher.dispatch(CALL, time.monotonic() - 1)


async def test_reported_cost_wins_and_missing_usage_is_counted() -> None:
    dispatcher, _ = build(
        lambda r: httpx.Response(
            200,
            json=completion(usage={"prompt_tokens": 10, "completion_tokens": 5, "cost": 0.00123}),
        )
    )
    assert (await dispatcher.dispatch(CALL, None)).cost_nano_usd == 1_230_000
    body = completion("one two three")
    del body["usage"]
    dispatcher, _ = build(lambda r: httpx.Response(200, json=body))
    result = await dispatcher.dispatch(CALL, None)
    assert result.answer.usage.output_tokens == 3 and result.answer.usage.input_tokens > 0


def sse(*chunks: dict) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


async def test_stream_passes_deltas_then_the_result() -> None:
    body = sse(
        {"choices": [{"delta": {"role": "assistant"}}]},
        {"choices": [{"delta": {"content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
    )
    dispatcher, _ = build(
        lambda r: httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
    )
    events = [e async for e in dispatcher.dispatch_stream(CALL, None)]
    assert [e.text for e in events if isinstance(e, Delta)] == ["Hel", "lo"]
    final = events[-1]
    assert isinstance(final, DispatchResult)
    assert final.answer.content == "Hello" and final.answer.finish is Finish.STOP
    assert final.answer.usage.output_tokens == 2


async def test_stream_fails_over_before_the_first_token() -> None:
    ok = sse({"choices": [{"delta": {"content": "ok"}, "finish_reason": "stop"}]})

    def handler(request: httpx.Request) -> httpx.Response:
        if "us-east" in request.url.path:
            return httpx.Response(
                429, headers={"retry-after": "30"}, json={"error": {"message": "slow down"}}
            )
        return httpx.Response(200, content=ok)

    dispatcher, seen = build(handler)
    events = [e async for e in dispatcher.dispatch_stream(CALL, None)]
    assert seen == ["us-east", "eu-west"]
    assert isinstance(events[-1], DispatchResult) and events[-1].region == "eu-west"

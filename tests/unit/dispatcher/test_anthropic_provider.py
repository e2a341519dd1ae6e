"""Endpoints with `provider: anthropic` speak the Messages API (issue 19, Must show 3): the
dispatcher sends them a Messages body with the key as `x-api-key` and an `anthropic-version`,
reads whole and streamed answers (text, tool_use, stop reasons, usage) from the simulator's
`/<region>/v1/messages`, and prices Claude calls from the catalogue, cache reads and writes
included. Other endpoints keep the OpenAI wire."""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import httpx
import orjson
from opentelemetry.sdk.trace import TracerProvider

from services.dispatcher.calls import Delta, ModelRequest, ProviderAnswer
from services.dispatcher.dispatcher import Dispatcher
from services.dispatcher.endpoints import parse_endpoints
from services.dispatcher.providers.anthropic import AnthropicMessagesClient, request_body
from services.dispatcher.providers.openai import OpenAICompatibleClient
from services.dispatcher.providers.select import ByProvider
from services.simulator.app import Simulation, build_app
from services.simulator.config import Settings
from services.simulator.scenario import load_scenario, parse_model
from shared.chat import (
    Finish,
    FormatKind,
    ImagePart,
    ResponseFormat,
    Role,
    Sampling,
    ToolCall,
    ToolChoiceMode,
    ToolFunction,
    ToolSet,
    Turn,
)
from shared.pricing import TokenUsage, load_catalogue, parse_catalogue
from tests.unit.dispatcher.upstream import TOKENS, policy

CLAUDE = "claude-sonnet-4-5"
ENDPOINTS = f"""
endpoints:
  - {{name: claude, provider: anthropic, region: us-east, base_url: 'http://sim/us-east/v1',
     api_key_env: CLAUDE_KEY, models: [{CLAUDE}]}}
  - {{name: oai, region: us-east, base_url: 'http://sim/us-east/v1', models: [gpt-4o]}}
"""
WEATHER = ToolFunction(
    "get_weather",
    "Current weather",
    json.dumps(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    ),
)


def call(text: str, **changes: Any) -> ModelRequest:
    base = ModelRequest(CLAUDE, (Turn(Role.USER, text),), Sampling(max_tokens=200), tier=1)
    return dataclasses.replace(base, **changes)


class Recorder:
    """The simulator app, with every request it was sent kept."""

    def __init__(self) -> None:
        scenario = load_scenario()
        models = {**scenario.models, CLAUDE: parse_model(CLAUDE, {"mean_output_tokens": 40})}
        app = build_app(
            Settings(latency_scale=0.0),
            Simulation(dataclasses.replace(scenario, models=models)),
            rng=random.Random(3),
            tokens=TOKENS,
        )
        self.transport = httpx.ASGITransport(app=app)
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.transport.handle_async_request(request)


def dispatcher(recorder: Recorder) -> Dispatcher:
    http = httpx.AsyncClient(transport=recorder)  # type: ignore[arg-type]
    env = {"CLAUDE_KEY": "sk-ant-test"}
    clients = ByProvider(
        OpenAICompatibleClient(http, TOKENS, env), AnthropicMessagesClient(http, TOKENS, env)
    )
    catalogue = load_catalogue()
    tracer = TracerProvider().get_tracer("test")
    return Dispatcher(parse_endpoints(ENDPOINTS, {}), clients, catalogue, tracer, policy())


async def test_a_claude_call_goes_to_the_messages_api_with_its_headers() -> None:
    recorder = Recorder()
    result = await dispatcher(recorder).dispatch(call("Explain write-ahead logs."), None)
    sent = recorder.requests[-1]
    assert sent.url.path == "/us-east/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-test" and "authorization" not in sent.headers
    assert sent.headers["anthropic-version"] == "2023-06-01"
    body = orjson.loads(sent.content)
    assert body["max_tokens"] == 200 and body["stream"] is True
    answer = result.answer
    assert answer.content and answer.finish is Finish.STOP and answer.model == CLAUDE
    assert answer.usage.input_tokens > 0 and answer.usage.output_tokens > 0
    price = load_catalogue().price(CLAUDE)
    assert result.cost_nano_usd == price.cost_nano_usd(answer.usage) > 0


async def test_other_endpoints_keep_the_openai_wire() -> None:
    recorder = Recorder()
    await dispatcher(recorder).dispatch(dataclasses.replace(call("Hi"), model="gpt-4o"), None)
    assert recorder.requests[-1].url.path == "/us-east/v1/chat/completions"


async def test_streamed_tool_calls_and_stop_reasons_come_back() -> None:
    recorder = Recorder()
    tools = ToolSet((WEATHER,), ToolChoiceMode.AUTO)
    events = [
        event
        async for event in dispatcher(recorder).dispatch_stream(
            call("What is the weather in Lisbon?", tools=tools), None
        )
    ]
    pieces = [e.piece for e in events if isinstance(e, Delta) and e.piece is not None]
    assert pieces[0].tool_calls[0].name == "get_weather"
    arguments = "".join(f.arguments for p in pieces for f in p.tool_calls)
    assert json.loads(arguments) == {"city": "Lisbon"}
    final = events[-1].answer  # type: ignore[union-attr]
    assert final.finish is Finish.TOOL_CALLS
    assert final.choices[0].tool_calls[0].name == "get_weather"
    long_answer = await dispatcher(recorder).dispatch(
        call("Explain consensus.", sampling=Sampling(max_tokens=3)), None
    )
    assert long_answer.answer.finish is Finish.LENGTH


def test_the_request_body_is_anthropics() -> None:
    turns = (
        Turn(Role.SYSTEM, "Be brief."),
        Turn(
            Role.USER,
            "Weather?",
            parts=("Weather?", ImagePart("data:image/png;base64,AAAA")),
        ),
        Turn(Role.ASSISTANT, "", tool_calls=(ToolCall("toolu_1", "get_weather", '{"city":"L"}'),)),
        Turn(Role.TOOL, "21 C", tool_call_id="toolu_1"),
        Turn(Role.USER, "Thanks"),
    )
    body = request_body(
        ModelRequest(
            CLAUDE,
            turns,
            Sampling(temperature=1.6, stop=("END",), top_k=7),
            response_format=ResponseFormat(FormatKind.JSON_OBJECT),
            tools=ToolSet((WEATHER,), ToolChoiceMode.REQUIRED, parallel_tool_calls=False),
            end_user="u-1",
        ),
        stream=False,
    )
    assert body["system"].startswith("Be brief.") and "JSON" in body["system"]
    assert body["max_tokens"] == 4096 and body["temperature"] == 1.0 and body["top_k"] == 7
    assert body["stop_sequences"] == ["END"] and body["metadata"] == {"user_id": "u-1"}
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    image = body["messages"][0]["content"][1]
    assert image["source"] == {"type": "base64", "media_type": "image/png", "data": "AAAA"}
    assert body["messages"][1]["content"][0]["input"] == {"city": "L"}
    assert [b["type"] for b in body["messages"][2]["content"]] == ["tool_result", "text"]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["tools"][0]["input_schema"]["required"] == ["city"]


async def test_usage_with_cache_reads_and_writes_is_priced_from_the_catalogue() -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        usage = {
            "input_tokens": 100,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": 2000,
            "output_tokens": 10,
        }
        message = {
            "model": CLAUDE,
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn",
            "usage": usage,
        }
        return httpx.Response(200, json=message)

    http = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    client = AnthropicMessagesClient(http, TOKENS, {})
    (endpoint,) = parse_endpoints(ENDPOINTS, {})[:1]
    events = [e async for e in client.stream(endpoint, call("Hi"), 5.0)]
    answer = events[-1]
    assert isinstance(answer, ProviderAnswer)
    assert answer.usage == TokenUsage(3100, 10, 1000, 2000)
    price = load_catalogue().price(CLAUDE)
    # 100 plain at $3, 1,000 read at $0.30, 2,000 written at $3.75, 10 out at $15 (per 1M).
    assert price.cost_nano_usd(answer.usage) == 300_000 + 300_000 + 7_500_000 + 150_000


def test_a_cache_write_price_defaults_to_the_input_price() -> None:
    price = parse_catalogue({"models": {"m": {"input": 1.0, "output": 2.0}}}).price("m")
    assert price.cost_nano_usd(TokenUsage(1000, 0, 0, 1000)) == 1_000_000


async def test_an_anthropic_error_body_and_an_error_event_are_upstream_errors() -> None:
    from services.dispatcher.providers.openai import UpstreamError

    def overloaded(request: httpx.Request) -> httpx.Response:
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
        return httpx.Response(529, json=error)

    def mid_stream(request: httpx.Request) -> httpx.Response:
        text = (
            b'event: message_start\ndata: {"type":"message_start","message":{"usage":{}}}\n\n'
            b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"x"}}\n\n'
        )
        return httpx.Response(200, content=text, headers={"content-type": "text/event-stream"})

    (endpoint,) = parse_endpoints(ENDPOINTS, {})[:1]
    for handler, status in ((overloaded, 529), (mid_stream, 500)):
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        client = AnthropicMessagesClient(http, TOKENS, {})
        try:
            [e async for e in client.stream(endpoint, call("Hi"), 5.0)]
        except UpstreamError as error:
            assert error.status == status and error.retryable
        else:
            raise AssertionError("no error raised")

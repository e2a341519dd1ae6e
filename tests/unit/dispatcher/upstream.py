"""A scripted OpenAI-compatible upstream for httpx.MockTransport, and a dispatcher wired to it.

Each region gets a Behaviour: an HTTP error, or an SSE stream with a delay before the first
token, pieces of text, an optional break mid-stream. The upstream records which regions were
called, which streams finished and which were cancelled by the client (a lost hedge).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import orjson
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.dispatcher.budgets import BudgetPolicy
from services.dispatcher.calls import ModelRequest
from services.dispatcher.dispatcher import Dispatcher, DispatchPolicy
from services.dispatcher.endpoints import parse_endpoints
from services.dispatcher.providers.openai import OpenAICompatibleClient
from shared.chat import Role, Sampling, Turn
from shared.pricing import parse_catalogue
from shared.tokens import TokenCounter

ENDPOINTS = """
endpoints:
  - {name: us, region: us-east, base_url: 'http://sim/us-east/v1', models: [m]}
  - {name: eu, region: eu-west, base_url: 'http://sim/eu-west/v1', models: [m]}
  - {name: ap, region: ap-south, base_url: 'http://sim/ap-south/v1', models: [m]}
"""
CATALOGUE = parse_catalogue({"models": {"m": {"input": 1.0, "output": 2.0}}})
CALL = ModelRequest("m", (Turn(Role.USER, "hi"),), Sampling(max_tokens=16), tier=1)
TOKENS = TokenCounter()


def chunk(payload: dict) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


@dataclass
class Behaviour:
    status: int = 200
    message: str = "boom"
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds before the first token; a callable gets the call's index in this region.
    ttft_s: float | Callable[[int], float] = 0.0
    pieces: tuple[str, ...] = ("Hel", "lo")
    gap_s: float = 0.0
    # Raise a broken connection after this many pieces.
    break_after: int | None = None
    usage: bool = True


@dataclass
class Upstream:
    behaviour: dict[str, Behaviour] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def set(self, region: str, **changes: Any) -> None:
        self.behaviour[region] = replace(self.behaviour.get(region, Behaviour()), **changes)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        region = request.url.path.split("/")[1]
        index = self.calls.count(region)
        self.calls.append(region)
        self.requests.append(request)
        b = self.behaviour.get(region, Behaviour())
        if b.status >= 400:
            return httpx.Response(
                b.status, headers=b.headers, json={"error": {"message": b.message}}
            )
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=self._sse(region, b, index)
        )

    async def _sse(self, region: str, b: Behaviour, index: int) -> AsyncIterator[bytes]:
        done = False
        try:
            await asyncio.sleep(b.ttft_s(index) if callable(b.ttft_s) else b.ttft_s)
            yield chunk({"choices": [{"delta": {"role": "assistant", "content": ""}}]})
            for n, piece in enumerate(b.pieces):
                if b.break_after is not None and n == b.break_after:
                    raise httpx.RemoteProtocolError("peer closed connection")
                yield chunk({"model": "m", "choices": [{"delta": {"content": piece}}]})
                await asyncio.sleep(b.gap_s)
            yield chunk({"choices": [{"delta": {}, "finish_reason": "stop"}]})
            if b.usage:
                yield chunk({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 2}})
            # Counted before the last event: a client stops reading at [DONE] and closes.
            self.finished.append(region)
            done = True
            yield b"data: [DONE]\n\n"
        finally:
            if not done:
                self.cancelled.append(region)


def policy(**changes: Any) -> DispatchPolicy:
    """Test defaults: hedging allowed after 4 samples, no budget limits unless asked."""
    base = DispatchPolicy(
        local_region="us-east",
        attempt_timeout_s=5,
        eject_after_failures=1,
        hedge_min_samples=4,
        hedge_min_delay_s=0.02,
        budgets=BudgetPolicy(retry_ratio=1.0, hedge_ratio=1.0),
    )
    return replace(base, **changes)


@dataclass
class Rig:
    dispatcher: Dispatcher
    upstream: Upstream
    spans: InMemorySpanExporter


def build(
    upstream: Upstream | None = None,
    endpoints: str = ENDPOINTS,
    env: dict[str, str] | None = None,
    **changes: Any,
) -> Rig:
    upstream = upstream or Upstream()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = OpenAICompatibleClient(
        httpx.AsyncClient(transport=httpx.MockTransport(upstream)), TOKENS, env=env or {}
    )
    dispatcher = Dispatcher(
        parse_endpoints(endpoints, {}),
        client,
        CATALOGUE,
        provider.get_tracer("test"),
        policy(**changes),
    )
    return Rig(dispatcher, upstream, exporter)


async def prime(rig: Rig, n: int = 8) -> None:
    """n fast answers, so the local endpoint has a p95 to hedge on."""
    for _ in range(n):
        await rig.dispatcher.dispatch(CALL, None)
    rig.upstream.calls.clear()
    rig.upstream.finished.clear()
    rig.upstream.cancelled.clear()

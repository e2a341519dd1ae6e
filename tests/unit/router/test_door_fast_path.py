"""`POST /v1/chat/completions` is served ahead of Starlette's router (http_api._DoorApp): it
must answer, refuse and trace exactly as the route behind Starlette does."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from services.router.http_api import SPAN_NAME
from services.router.http_limits import DoorLimits
from tests.unit.router.door_rig import HEADERS, InstantPipeline, door_app

BODY = {"messages": [{"role": "user", "content": "hi"}]}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def traced() -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("tests"), exporter


async def post(app: Any, root_path: str = "", **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://door") as client:
        return await client.post(f"{root_path}/v1/chat/completions", **kwargs)


async def test_the_fast_path_and_starlettes_route_give_the_same_answer() -> None:
    app = door_app()
    fast = await post(app, json=BODY, headers=HEADERS)
    # Under a root_path the request goes through Starlette's router to the same handler.
    routed = await post(app, root_path="/gw", json=BODY, headers=HEADERS)
    assert fast.status_code == routed.status_code == 200
    assert fast.json()["choices"] == routed.json()["choices"]
    assert fast.headers["content-type"] == routed.headers["content-type"] == "application/json"
    names = {"x-sluice-tier", "x-sluice-cache", "x-sluice-trace-id", "x-sluice-policy-version"}
    assert names <= set(fast.headers) and names <= set(routed.headers)


async def test_the_server_span_continues_the_callers_trace() -> None:
    tracer, exporter = traced()
    headers = {**HEADERS, "traceparent": TRACEPARENT}
    response = await post(door_app(tracer=tracer), json=BODY, headers=headers)
    assert response.status_code == 200
    (span,) = exporter.get_finished_spans()
    assert span.name == SPAN_NAME and span.kind is SpanKind.SERVER
    assert span.parent is not None and span.parent.span_id == 0xB7AD6B7169203331
    assert response.headers["x-sluice-trace-id"] == "0af7651916cd43dd8448eb211c80319c"


async def test_an_unexpected_error_is_a_500_and_is_recorded_on_the_span() -> None:
    tracer, exporter = traced()
    app = door_app(InstantPipeline(RuntimeError("boom")), tracer=tracer)
    response = await post(app, json=BODY, headers=HEADERS)
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "RuntimeError: boom"
    assert [event.name for event in span.events] == ["exception"]


async def test_the_body_limit_still_guards_the_fast_path() -> None:
    app = door_app(limits=DoorLimits(max_body_bytes=64))
    response = await post(app, json={**BODY, "user": "x" * 100}, headers=HEADERS)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_other_methods_on_the_path_are_405_in_openai_shape(method: str) -> None:
    transport = httpx.ASGITransport(app=door_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://door") as client:
        response = await client.request(method, "/v1/chat/completions", headers=HEADERS)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"

"""The HTTP front door refuses bad input with a 4xx naming the field, in OpenAI's error shape,
and never answers 5xx in plain text (issue 14 items 2 and 8)."""

from __future__ import annotations

from typing import Any

import pytest

from services.router.http_limits import DoorLimits
from shared.errors import Unavailable
from tests.unit.router.door_rig import HEADERS, InstantPipeline, door_app, http_client

USER = [{"role": "user", "content": "hello"}]


async def post(body: Any, pipeline: InstantPipeline | None = None, **kwargs: Any) -> Any:
    async with http_client(door_app(pipeline, **kwargs)) as client:
        if isinstance(body, bytes):
            return await client.post("/v1/chat/completions", content=body, headers=HEADERS)
        return await client.post("/v1/chat/completions", json=body, headers=HEADERS)


def assert_openai_error(response: Any, status: int, field: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert field in error["message"], error
    return dict(error)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_beyond_int32_is_a_400_naming_it(key: str, stream: bool) -> None:
    response = await post({"messages": USER, key: 2**31, "stream": stream})
    error = assert_openai_error(response, 400, key)
    assert error["param"] == key


async def test_max_tokens_at_int32_max_is_accepted() -> None:
    response = await post({"messages": USER, "max_tokens": 2**31 - 1})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("response_format", "field"),
    [
        ({"type": "json_schema", "json_schema": "x"}, "response_format.json_schema"),
        ({"type": "json_schema", "json_schema": {"schema": 3}}, "json_schema.schema"),
        ({"type": "json_schema"}, "response_format.json_schema"),
        ("json", "response_format"),
        ({"type": "yaml"}, "response_format.type"),
    ],
)
async def test_malformed_response_format_is_a_400(response_format: Any, field: str) -> None:
    response = await post({"messages": USER, "response_format": response_format})
    assert_openai_error(response, 400, field)


async def test_a_deeply_nested_schema_is_a_400() -> None:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(200):
        schema = {"type": "object", "properties": {"x": schema}}
    response = await post(
        {
            "messages": USER,
            "response_format": {"type": "json_schema", "json_schema": {"schema": schema}},
        }
    )
    assert_openai_error(response, 400, "response_format.json_schema")


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"stream": "no"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"sluice": {"cache": "no"}}, "sluice.cache"),
        ({"sluice": "off"}, "sluice"),
        ({"model": 7}, "model"),
        ({"temperature": "hot"}, "temperature"),
        ({"stop": [1]}, "stop"),
        ({"messages": [{"role": "user", "content": "hi", "name": 5}]}, "messages[0].name"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "content"),
        ({"messages": [{"role": ["user"], "content": "hi"}]}, "messages[0].role"),
    ],
)
async def test_wrong_types_are_400s_naming_the_field(extra: dict[str, Any], field: str) -> None:
    response = await post({"messages": USER, **extra})
    assert_openai_error(response, 400, field)


@pytest.mark.parametrize("invisible", ["\u200b", "\u200c\u200d", "\u2060\ufeff", "\u200b \u3000\t"])
async def test_a_prompt_of_invisible_characters_is_empty(invisible: str) -> None:
    response = await post({"messages": [{"role": "user", "content": invisible * 5}]})
    assert_openai_error(response, 400, "messages[0].content is empty")


async def test_a_long_model_class_is_not_echoed_in_full() -> None:
    response = await post({"model": "m" * 10_000, "messages": USER})
    error = assert_openai_error(response, 400, "unknown model_class")
    assert len(error["message"]) < 300 and "…" in error["message"]


@pytest.mark.parametrize(
    "body",
    [b'{"messages": NaN}', b'{"temperature": Infinity, "messages": []}', b"[" * 5000, b"\xff"],
)
async def test_bodies_json_cannot_parse_are_400s(body: bytes) -> None:
    response = await post(body)
    assert_openai_error(response, 400, "not valid JSON")


async def test_an_unexpected_error_is_a_500_in_openai_shape() -> None:
    response = await post({"messages": USER}, InstantPipeline(RuntimeError("boom at 10.0.0.9")))
    error = assert_openai_error(response, 500, "internal error")
    assert "10.0.0.9" not in error["message"]


async def test_a_503_names_no_internal_endpoint() -> None:
    down = Unavailable("no tier could be reached: dispatcher unavailable at 10.1.2.3:50055: boom")
    response = await post({"messages": USER}, InstantPipeline(down))
    error = assert_openai_error(response, 503, "upstream unavailable")
    assert "10.1.2.3" not in error["message"] and "boom" not in error["message"]


async def test_a_body_over_the_limit_is_a_413_naming_the_limit() -> None:
    limits = DoorLimits(max_body_bytes=2048)
    big = {"messages": [{"role": "user", "content": "a" * 4096}]}
    response = await post(big, limits=limits)
    error = assert_openai_error(response, 413, "2048 bytes")
    assert error["code"] == "request_too_large"
    small = await post({"messages": USER}, limits=limits)
    assert small.status_code == 200

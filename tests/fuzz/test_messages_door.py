"""Property-based fuzzing of the Messages door (issue 19): `POST /v1/messages` in process through
httpx's ASGI transport, over a pipeline that answers at once. Valid bodies (system, text and
image blocks, tools, tool_choice, tool round trips, sampling, metadata, streaming), near-valid
ones with one field replaced by something hostile, a block broken, and hostile bytes. Whatever
is sent: no 5xx, no hang, and every refusal a 4xx in Anthropic's error shape whose message
names the field.

SLUICE_FUZZ_MESSAGES_EXAMPLES (1,000) requests per run, in well under 20 s.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.strategies import HOSTILE_BYTES, JUNK, TEXT, VISIBLE, _dump
from tests.unit.router.door_rig import API_KEY, door_app, http_client

EXAMPLES = int(os.environ.get("SLUICE_FUZZ_MESSAGES_EXAMPLES", "1000"))
HANG_S = 30.0
HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
IMAGE: Any = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
PNG: Any = {
    "type": "image",
    "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
}


@dataclass(frozen=True)
class Case:
    """A body; `field` must be named by a refusal, "" when none is allowed, None when none is
    predictable (hostile bytes)."""

    body: bytes
    field: str | None

    def __repr__(self) -> str:
        return f"Case(field={self.field!r}, {len(self.body)} bytes: {self.body[:300]!r})"


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


@st.composite
def user_content(draw: st.DrawFn, images: bool) -> Any:
    if not images and draw(st.booleans()):
        return draw(VISIBLE)
    blocks = [text_block(t) for t in draw(st.lists(VISIBLE, min_size=1, max_size=3))]
    if images:
        blocks.insert(draw(st.integers(0, len(blocks))), draw(st.sampled_from([IMAGE, PNG])))
    return blocks


@st.composite
def conversation(draw: st.DrawFn, images: bool, tools: bool) -> list[dict[str, Any]]:
    """Alternating turns ending with the user's; with tools, maybe a tool round trip."""
    messages: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 2))):
        messages.append({"role": "user", "content": draw(VISIBLE)})
        messages.append({"role": "assistant", "content": draw(VISIBLE)})
    messages.append({"role": "user", "content": draw(user_content(images))})
    if tools and draw(st.booleans()):
        call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "L"}}
        result: Any = {"type": "tool_result", "tool_use_id": "toolu_1"}
        result["content"] = draw(st.sampled_from(["21 C", [text_block("21 C")], None]))
        messages.append({"role": "assistant", "content": [call]})
        messages.append({"role": "user", "content": [result]})
    return messages


@st.composite
def valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    images = draw(st.booleans())
    tools = not images and draw(st.booleans())
    body: dict[str, Any] = {
        "model": "vision" if images else draw(st.sampled_from(["chat", "auto"])),
        "max_tokens": draw(st.integers(1, 4096)),
        "messages": draw(conversation(images, tools)),
    }
    optional: dict[str, Any] = {
        "system": st.one_of(VISIBLE, st.lists(VISIBLE.map(text_block), min_size=1, max_size=2)),
        "temperature": st.floats(0, 1),
        "top_p": st.floats(0.01, 1),
        "stop_sequences": st.lists(VISIBLE, max_size=4),
        "metadata": st.fixed_dictionaries({"user_id": TEXT}),
        "stream": st.booleans(),
        "sluice": st.just({"cache": False}),
        "top_k": st.none(),
    }
    for key in draw(st.sets(st.sampled_from(sorted(optional)))):
        body[key] = draw(optional[key])
    if tools:
        body["tools"] = [{"name": "get_weather", "description": "w", "input_schema": SCHEMA}]
        choice = draw(st.sampled_from(["auto", "any", "tool", "none"]))
        body["tool_choice"] = {
            "type": choice,
            **({"name": "get_weather"} if choice == "tool" else {}),
        }
    return body


FIELDS = [
    "model", "messages", "max_tokens", "system", "temperature", "top_p", "stop_sequences",
    "metadata", "stream", "tools", "tool_choice", "top_k", "sluice", "thinking",
]  # fmt: skip


@st.composite
def near_valid(draw: st.DrawFn) -> Case:
    body = draw(valid_bodies())
    field = draw(st.sampled_from(FIELDS))
    if field == "tools":
        body.pop("tool_choice", None)
        body["messages"] = body["messages"][:1]
    body[field] = draw(JUNK)
    return Case(_dump(body), field)


@st.composite
def broken_block(draw: st.DrawFn) -> Case:
    body = draw(valid_bodies())
    last = body["messages"][-1]
    content = last["content"]
    block = dict(content[0]) if isinstance(content, list) else text_block(content)
    block[draw(st.sampled_from(["type", "text", "source", "tool_use_id", "content", "x"]))] = draw(
        JUNK
    )
    last["content"] = [block]
    return Case(_dump(body), "messages")


def cases() -> st.SearchStrategy[Case]:
    return st.one_of(
        valid_bodies().map(lambda body: Case(_dump(body), "")),
        near_valid(),
        broken_block(),
        HOSTILE_BYTES.map(lambda raw: Case(raw, None)),
    )


def check(case: Case, status: int, body: bytes, content_type: str) -> None:
    assert status < 500, (status, body[:300])
    if status < 400:
        return
    assert content_type.startswith("application/json"), (status, body[:300])
    answer = orjson.loads(body)
    assert answer["type"] == "error" and set(answer["error"]) == {"type", "message"}
    message = answer["error"]["message"]
    assert message and answer["error"]["type"] == "invalid_request_error", answer
    assert case.field != "", f"a valid body was refused: {message}"
    if case.field is not None:
        assert case.field in message, (case.field, message)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    yield running
    running.close()


def test_messages_door(loop: asyncio.AbstractEventLoop) -> None:
    client = http_client(door_app(max_prompt_tokens=10_000_000))
    sent = 0

    @FUZZ
    @given(case=cases())
    def one(case: Case) -> None:
        nonlocal sent
        sent += 1
        response = loop.run_until_complete(
            asyncio.wait_for(
                client.post("/v1/messages", content=case.body, headers=HEADERS), HANG_S
            )
        )
        check(case, response.status_code, response.content, response.headers["content-type"])

    try:
        one()
    finally:
        loop.run_until_complete(client.aclose())
    assert sent >= EXAMPLES

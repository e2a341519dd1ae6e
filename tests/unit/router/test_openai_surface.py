"""README's "supported / rejected" tables, walked (issue 15, Must show 2): every row's field is
sent through the front door; a supported one must be admitted and, where it can be seen,
reach the pipeline; a rejected one (or a rejected value of a partly supported one) must be a
400 whose `param` names it. And every field of the installed SDK's request type must have a
row, so a new SDK field cannot slip by unlisted."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai.types.chat.completion_create_params import CompletionCreateParamsBase

from services.router.model import CacheMode, ChatRequest
from shared.chat import FormatKind, ImagePart, Role, ToolChoiceMode
from tests.unit.router.door_rig import HEADERS, ScriptedPipeline, door_app, http_client, result_for

README = Path(__file__).resolve().parents[3] / "README.md"
USER = {"role": "user", "content": "weather in Lisbon?"}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    ],
}
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
WITH_IMAGE = {"role": "user", "content": [{"type": "text", "text": "what?"}, IMAGE]}

Check = Callable[[ChatRequest, Any], bool]


def sampling(name: str, value: Any) -> Check:
    return lambda chat, _: getattr(chat.sampling, name) == value


# field: (what the request adds, what must be true of the admitted request and the answer)
SUPPORTED: dict[str, tuple[dict[str, Any], Check]] = {
    "messages": ({"messages": [USER]}, lambda chat, _: chat.turns[-1].content == USER["content"]),
    "model": ({"model": "vision"}, lambda chat, _: chat.model_class.name == "vision"),
    "frequency_penalty": ({"frequency_penalty": 0.5}, sampling("frequency_penalty", 0.5)),
    "logprobs": (
        {"logprobs": True},
        lambda chat, body: chat.sampling.logprobs and body["choices"][0]["logprobs"] is not None,
    ),
    "max_completion_tokens": ({"max_completion_tokens": 7}, sampling("max_tokens", 7)),
    "max_tokens": ({"max_tokens": 9}, sampling("max_tokens", 9)),
    "metadata": ({"metadata": {"team": "a"}}, lambda chat, _: chat.metadata == (("team", "a"),)),
    "modalities": ({"modalities": ["text"]}, lambda chat, _: True),
    "n": ({"n": 2}, sampling("n", 2)),
    "parallel_tool_calls": (
        {"tools": [TOOL], "parallel_tool_calls": False},
        lambda chat, _: chat.tools.parallel_tool_calls is False,
    ),
    "presence_penalty": ({"presence_penalty": -1}, sampling("presence_penalty", -1.0)),
    "response_format": (
        {"response_format": {"type": "json_object"}},
        lambda chat, _: chat.response_format.kind is FormatKind.JSON_OBJECT,
    ),
    "safety_identifier": ({"safety_identifier": "h1"}, lambda chat, _: chat.end_user == "h1"),
    "seed": ({"seed": 42}, sampling("seed", 42)),
    "service_tier": ({"service_tier": "default"}, lambda chat, _: True),
    "stop": ({"stop": ["END"]}, sampling("stop", ("END",))),
    "store": ({"store": False}, lambda chat, _: True),
    "stream": ({"stream": True}, lambda chat, body: body[-1] == "[DONE]"),
    "stream_options": (
        {"stream": True, "stream_options": {"include_usage": True}},
        lambda chat, body: body[-2]["choices"] == [] and "usage" in body[-2],
    ),
    "temperature": ({"temperature": 0.3}, sampling("temperature", 0.3)),
    "tool_choice": (
        {"tools": [TOOL], "tool_choice": "required"},
        lambda chat, _: chat.tools.choice is ToolChoiceMode.REQUIRED,
    ),
    "tools": ({"tools": [TOOL]}, lambda chat, _: chat.tools.functions[0].name == "get_weather"),
    "top_logprobs": ({"logprobs": True, "top_logprobs": 2}, sampling("top_logprobs", 2)),
    "top_p": ({"top_p": 0.5}, sampling("top_p", 0.5)),
    "user": ({"user": "u1"}, lambda chat, _: chat.end_user == "u1"),
    "sluice": ({"sluice": {"cache": False}}, lambda chat, _: chat.cache_mode is CacheMode.BYPASS),
}
# field: a request that uses it in a way Sluice refuses
REJECTED: dict[str, dict[str, Any]] = {
    "audio": {"audio": {"voice": "alloy", "format": "wav"}},
    "function_call": {"function_call": "auto"},
    "functions": {"functions": [{"name": "f"}]},
    "logit_bias": {"logit_bias": {"50256": -100}},
    "modalities": {"modalities": ["text", "audio"]},
    "moderation": {"moderation": {"input": {"mode": "block"}}},
    "prediction": {"prediction": {"type": "content", "content": "x"}},
    "prompt_cache_key": {"prompt_cache_key": "k"},
    "prompt_cache_options": {"prompt_cache_options": {"mode": "explicit"}},
    "prompt_cache_retention": {"prompt_cache_retention": "24h"},
    "reasoning_effort": {"reasoning_effort": "low"},
    "service_tier": {"service_tier": "flex"},
    "store": {"store": True},
    "stream_options": {"stream_options": {"include_usage": True}},
    "verbosity": {"verbosity": "low"},
    "web_search_options": {"web_search_options": {}},
}
# Rows of the messages table: the messages that use it; for a rejected use, the param named.
MESSAGES_SUPPORTED: dict[str, tuple[list[Any], Check]] = {
    "system": (
        [{"role": "system", "content": "s"}, USER],
        lambda c, _: c.turns[0].role is Role.SYSTEM,
    ),
    "developer": (
        [{"role": "developer", "content": "d"}, USER],
        lambda c, _: c.turns[0].role is Role.SYSTEM,
    ),
    "user": ([USER], lambda c, _: c.turns[0].role is Role.USER),
    "assistant": (
        [USER, {"role": "assistant", "content": "a"}, USER],
        lambda c, _: c.turns[1].content == "a",
    ),
    "tool": (
        [USER, CALL, {"role": "tool", "tool_call_id": "c1", "content": "21"}],
        lambda c, _: c.turns[2].tool_call_id == "c1" and c.turns[1].tool_calls[0].id == "c1",
    ),
    "name": ([{**USER, "name": "ann"}], lambda c, _: c.turns[0].name == "ann"),
    "image_url": ([WITH_IMAGE], lambda c, _: isinstance(c.turns[0].parts[1], ImagePart)),
}
MESSAGES_REJECTED: dict[str, tuple[list[Any], str]] = {
    "function": ([{"role": "function", "name": "f", "content": "x"}], "messages[0].role"),
    # An image for the `chat` class, whose cheap tier cannot take images.
    "image_url": ([WITH_IMAGE], "messages[0].content[1]"),
    "input_audio": (
        [{"role": "user", "content": [{"type": "input_audio"}]}],
        "messages[0].content[0].type",
    ),
    "file": ([{"role": "user", "content": [{"type": "file"}]}], "messages[0].content[0].type"),
    "audio": (
        [USER, {"role": "assistant", "content": "a", "audio": {"id": "x"}}, USER],
        "messages[1].audio",
    ),
    "function_call": (
        [USER, {"role": "assistant", "content": "a", "function_call": {"name": "f"}}, USER],
        "messages[1].function_call",
    ),
}


def table(header: str) -> dict[str, tuple[str, str]]:
    """The README table whose first column is `header`: field -> (status, what happens)."""
    text = README.read_text()
    start = text.index(f"| {header} | Sluice | what happens |")
    rows: dict[str, tuple[str, str]] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        field, status, what = (cell.strip() for cell in line.strip("|").split("|", 2))
        rows[field.strip("`")] = (status, what)
    return rows


FIELDS = table("field")
MESSAGE_ROWS = table("in `messages`")


async def send(body: dict[str, Any]) -> tuple[int, Any, ChatRequest | None]:
    pipeline = ScriptedPipeline(lambda request: [result_for(request)])
    async with http_client(door_app(pipeline)) as client:
        response = await client.post("/v1/chat/completions", json=body, headers=HEADERS)
    if response.headers["content-type"].startswith("text/event-stream"):
        lines = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
        data: Any = [line if line == "[DONE]" else orjson.loads(line) for line in lines]
    else:
        data = response.json()
    return response.status_code, data, pipeline.requests[0] if pipeline.requests else None


def test_the_tables_have_a_status_for_every_row() -> None:
    statuses = {status for status, _ in (*FIELDS.values(), *MESSAGE_ROWS.values())}
    assert statuses <= {"supported", "rejected", "supported; other values rejected"}
    assert len(FIELDS) >= 38 and len(MESSAGE_ROWS) >= 12


def test_every_field_of_the_sdk_request_is_in_the_table() -> None:
    sdk_fields = set(CompletionCreateParamsBase.__annotations__) | {"stream"}
    missing = sdk_fields - set(FIELDS)
    assert not missing, f"README's table does not list {sorted(missing)}"


async def check_row(status: str, field: str, supported: Any, rejected: Any, body: Callable) -> None:
    if status.startswith("supported"):
        assert field in supported, f"no example for supported {field!r}"
        extra, honoured = supported[field]
        code, data, chat = await send(body(extra))
        assert code == 200, (field, data)
        assert chat is not None and honoured(chat, data), field
    if "rejected" in status:
        assert field in rejected, f"no example for rejected {field!r}"
        extra, param = rejected[field]
        code, data, chat = await send(body(extra))
        assert code == 400, (field, data)
        assert data["error"]["param"] == param and chat is None, (field, data)


@pytest.mark.parametrize("field", sorted(FIELDS))
async def test_each_request_field_does_what_its_row_says(field: str) -> None:
    status, _ = FIELDS[field]
    rejected = {name: (extra, name) for name, extra in REJECTED.items()}
    await check_row(status, field, SUPPORTED, rejected, lambda extra: {"messages": [USER], **extra})


@pytest.mark.parametrize("row", sorted(MESSAGE_ROWS))
async def test_each_messages_row_does_what_it_says(row: str) -> None:
    status, _ = MESSAGE_ROWS[row]
    supported = {
        name: ({"model": "vision", "messages": m}, check)
        for name, (m, check) in MESSAGES_SUPPORTED.items()
    }
    rejected = {
        name: ({"model": "chat", "messages": m}, param)
        for name, (m, param) in MESSAGES_REJECTED.items()
    }
    await check_row(status, row, supported, rejected, lambda extra: extra)


async def test_an_unknown_field_is_refused_like_openai_does() -> None:
    code, data, _ = await send({"messages": [USER], "temprature": 0.2})
    assert code == 400 and data["error"]["param"] == "temprature"
    assert "unknown fields are refused" in data["error"]["message"]


@pytest.mark.parametrize("field", sorted(REJECTED))
async def test_a_rejection_says_why(field: str) -> None:
    _, data, _ = await send({"messages": [USER], **REJECTED[field]})
    assert re.search(
        "is not supported by this gateway|is deprecated|only allowed with", data["error"]["message"]
    )

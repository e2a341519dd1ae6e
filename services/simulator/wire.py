"""OpenAI chat-completions wire shapes: request parsing, bodies, SSE chunks and errors.

Shapes follow the OpenAI API reference for `POST /v1/chat/completions`: a streamed reply is a
series of `chat.completion.chunk` objects, the first carrying the role, one carrying
`finish_reason`, and (as with `stream_options.include_usage`) a last chunk with empty `choices`
and the `usage`. The simulator always sends that usage chunk.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from shared.pricing import TokenUsage

_WORD_START = re.compile(r"(?<=\s)(?=\S)")
DONE_EVENT = b"data: [DONE]\n\n"


class BadRequest(ValueError):
    """The request body is malformed; the message names the problem."""


@dataclass(frozen=True)
class ChatRequest:
    model: str
    # (role, text) pairs, text parts of multi-part content joined.
    messages: tuple[tuple[str, str], ...]
    max_tokens: int | None
    temperature: float | None
    stream: bool
    # OpenAI `logprobs: true`: each answer token comes with its log probability.
    logprobs: bool = False

    def last_user_text(self) -> str:
        for role, text in reversed(self.messages):
            if role == "user":
                return text
        return ""


@dataclass(frozen=True)
class Reply:
    """What goes into a completion body or stream, besides the answer text."""

    completion_id: str
    created: int
    model: str
    usage: TokenUsage
    # OpenRouter-style `usage.cost` in USD; only recorded (replay) answers carry it.
    cost_usd: float | None = None


def _content_text(where: str, content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, Mapping)]
        if all(isinstance(p, str) for p in parts):
            return "".join(parts)
    raise BadRequest(f"{where}.content must be a string or a list of text parts")


def _parse_messages(raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        raise BadRequest("'messages' is required")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("'messages' must be a non-empty array")
    messages = []
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(message, Mapping):
            raise BadRequest(f"{where} must be an object")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise BadRequest(f"{where}.role must be a non-empty string")
        messages.append((role, _content_text(where, message.get("content"))))
    return tuple(messages)


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"'{key}' must be a positive integer")
        return value
    return None


def _temperature(raw: Any) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 2:
        raise BadRequest("'temperature' must be a number between 0 and 2")
    return float(raw)


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Parses and validates a chat-completions body."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, Mapping):
        raise BadRequest("'stream_options' must be an object")
    logprobs = body.get("logprobs", False)
    if not isinstance(logprobs, bool):
        raise BadRequest("'logprobs' must be true or false")
    return ChatRequest(
        model=model,
        messages=_parse_messages(body.get("messages")),
        max_tokens=_max_tokens(body),
        temperature=_temperature(body.get("temperature")),
        stream=stream,
        logprobs=logprobs,
    )


def usage_json(usage: TokenUsage, cost_usd: float | None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }
    if cost_usd is not None:
        payload["cost"] = cost_usd
    return payload


def completion_body(
    reply: Reply, text: str, finish_reason: str, logprobs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "id": reply.completion_id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
                "logprobs": logprobs,
            }
        ],
        "usage": usage_json(reply.usage, reply.cost_usd),
    }


def sse_event(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _chunk(reply: Reply, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": reply.completion_id,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
        "choices": choices,
    }


def delta_event(
    reply: Reply,
    delta: Mapping[str, Any],
    finish_reason: str | None = None,
    logprobs: Mapping[str, Any] | None = None,
) -> bytes:
    choice = {
        "index": 0,
        "delta": dict(delta),
        "finish_reason": finish_reason,
        "logprobs": logprobs,
    }
    return sse_event(_chunk(reply, [choice]))


def usage_event(reply: Reply) -> bytes:
    return sse_event(_chunk(reply, []) | {"usage": usage_json(reply.usage, reply.cost_usd)})


def stream_pieces(text: str, words_per_piece: int = 3) -> Iterator[str]:
    """Splits text into pieces of a few words each; the pieces concatenate back to text."""
    words = _WORD_START.split(text)
    for start in range(0, len(words), words_per_piece):
        yield "".join(words[start : start + words_per_piece])


def error_body(message: str, code: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def models_body(names: list[str]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "sluice-simulator"}
            for name in names
        ],
    }

"""Parses and validates a chat-completions body into a ChatRequest.

Every field of OpenAI's request that changes an answer is honoured; `presence_penalty`,
`frequency_penalty`, `top_p`, `user` and `metadata` are checked and then ignored, as a
deterministic simulator has nothing to apply them to. Fields the simulator does not know are
ignored. A bad value is a BadRequest naming the parameter, which the app turns into a 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from services.simulator.parse_turns import (
    parse_messages,
    parse_response_format,
    parse_tool_choice,
    parse_tools,
)
from services.simulator.request import MAX_CHOICES, BadRequest, ChatRequest

MAX_STOP_SEQUENCES = 4
MAX_TOP_LOGPROBS = 20
MAX_METADATA_KEYS = 16


def _integer(body: Mapping[str, Any], key: str, low: int, high: int | None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        upper = "" if high is None else f" and at most {high}"
        raise BadRequest(f"'{key}' must be an integer of at least {low}{upper}", key)
    if high is not None and value > high:
        raise BadRequest(f"'{key}' must be an integer of at least {low} and at most {high}", key)
    return value


def _number(body: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequest(f"'{key}' must be a number between {low:g} and {high:g}", key)
    return float(value)


def _boolean(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"'{key}' must be true or false", key)
    return value


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"'{key}' must be a positive integer", key)
        return value
    return None


def _stop(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    sequences = [raw] if isinstance(raw, str) else raw
    if (
        not isinstance(sequences, list)
        or len(sequences) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) and s for s in sequences)
    ):
        raise BadRequest(
            f"'stop' must be a non-empty string or an array of at most {MAX_STOP_SEQUENCES}",
            "stop",
        )
    return tuple(sequences)


def _include_usage(body: Mapping[str, Any], stream: bool) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, Mapping):
        raise BadRequest("'stream_options' must be an object", "stream_options")
    if not stream:
        raise BadRequest("'stream_options' is only allowed when 'stream' is true", "stream_options")
    return _boolean(options, "include_usage", False)


def _check_ignored(body: Mapping[str, Any]) -> None:
    """Fields that are validated but do not change a simulated answer."""
    _number(body, "presence_penalty", -2.0, 2.0)
    _number(body, "frequency_penalty", -2.0, 2.0)
    _number(body, "top_p", 0.0, 1.0)
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise BadRequest("'user' must be a string", "user")
    metadata = body.get("metadata")
    if metadata is None:
        return
    if (
        not isinstance(metadata, Mapping)
        or len(metadata) > MAX_METADATA_KEYS
        or not all(isinstance(v, str) for v in metadata.values())
    ):
        raise BadRequest(
            f"'metadata' must be an object of at most {MAX_METADATA_KEYS} string values",
            "metadata",
        )


def _logprobs(body: Mapping[str, Any]) -> tuple[bool, int]:
    logprobs = _boolean(body, "logprobs", False)
    top = _integer(body, "top_logprobs", 0, MAX_TOP_LOGPROBS) or 0
    if "top_logprobs" in body and body["top_logprobs"] is not None and not logprobs:
        raise BadRequest("'top_logprobs' needs 'logprobs' set to true", "top_logprobs")
    return logprobs, top


def _body(raw: bytes) -> Mapping[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Parses and validates a chat-completions body."""
    body = _body(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string", "model")
    messages = parse_messages(body.get("messages"))
    stream = _boolean(body, "stream", False)
    logprobs, top_logprobs = _logprobs(body)
    tools = parse_tools(body.get("tools"))
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequest("'seed' must be an integer", "seed")
    _check_ignored(body)
    return ChatRequest(
        model=model,
        messages=messages,
        max_tokens=_max_tokens(body),
        temperature=_number(body, "temperature", 0.0, 2.0),
        stream=stream,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        include_usage=_include_usage(body, stream),
        tools=tools,
        tool_choice=parse_tool_choice(body.get("tool_choice"), tools),
        parallel_tool_calls=_boolean(body, "parallel_tool_calls", True),
        response_format=parse_response_format(body.get("response_format")),
        n=_integer(body, "n", 1, MAX_CHOICES) or 1,
        seed=seed,
        stop=_stop(body.get("stop")),
    )

"""Anthropic Messages wire shapes for the simulator's `/<region>/v1/messages`.

A Messages body is read by turning it into the chat-completions body the simulator already
parses (parsing.py), so every answer rule, tool plan and limit is shared: the system prompt
becomes a system turn, `tool_result` blocks become tool turns, `tool_use` blocks an assistant's
tool calls, image blocks image parts. The answer goes back as a `message` body, or as
Anthropic's stream events, with `stop_reason` (`stop_sequence` and the matched sequence when
the answer was cut at one) and `usage`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from services.simulator.choices import Choice
from services.simulator.request import BadRequest
from services.simulator.wire import stream_pieces

_STOP_REASONS = {"length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_ARGUMENT_PIECE_CHARS = 16


def _image_part(block: Mapping[str, Any]) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    else:
        url = str(source.get("url") or "")
    return {"type": "image_url", "image_url": {"url": url}}


def _user(blocks: list[Any]) -> list[dict[str, Any]]:
    tools = [
        {
            "role": "tool",
            "tool_call_id": block.get("tool_use_id"),
            "content": _result_text(block.get("content")),
        }
        for block in blocks
        if block.get("type") == "tool_result"
    ]
    parts = [
        {"type": "text", "text": block.get("text")}
        if block.get("type") == "text"
        else _image_part(block)
        for block in blocks
        if block.get("type") in ("text", "image")
    ]
    return tools + ([{"role": "user", "content": parts}] if parts else [])


def _result_text(raw: Any) -> str:
    if isinstance(raw, list):
        return "".join(str(b.get("text") or "") for b in raw if isinstance(b, Mapping))
    return str(raw or "")


def _assistant(blocks: list[Any]) -> dict[str, Any]:
    text = "".join(str(b.get("text") or "") for b in blocks if b.get("type") == "text")
    calls = [
        {
            "id": b.get("id"),
            "type": "function",
            "function": {"name": b.get("name"), "arguments": orjson.dumps(b.get("input")).decode()},
        }
        for b in blocks
        if b.get("type") == "tool_use"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    system = body.get("system")
    if isinstance(system, list):
        system = "\n\n".join(str(b.get("text") or "") for b in system if isinstance(b, Mapping))
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("messages: must be a non-empty list", "messages")
    for index, message in enumerate(raw):
        content = message.get("content") if isinstance(message, Mapping) else None
        role = message.get("role") if isinstance(message, Mapping) else None
        if role not in ("user", "assistant") or not isinstance(content, str | list) or not content:
            raise BadRequest(f"messages.{index}: needs a role and non-empty content", "messages")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not all(isinstance(b, Mapping) for b in blocks):
            raise BadRequest(f"messages.{index}.content: blocks must be objects", "messages")
        out.extend(_user(blocks) if role == "user" else [_assistant(blocks)])
    return out


def _tool_choice(raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        return None
    if raw.get("type") == "tool":
        return {"type": "function", "function": {"name": raw.get("name")}}
    return _TOOL_CHOICES.get(str(raw.get("type")), raw.get("type"))


def chat_body(body: Any) -> tuple[bytes, tuple[str, ...]]:
    """The chat-completions body for a Messages body, and its stop sequences (applied by the
    caller, which must know which one cut the answer)."""
    if not isinstance(body, Mapping):
        raise BadRequest("request body must be a JSON object")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest("max_tokens: field required (an integer of at least 1)", "max_tokens")
    stop = body.get("stop_sequences") or []
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise BadRequest("stop_sequences: must be a list of non-empty strings", "stop_sequences")
    tools = [
        {
            "type": "function",
            "function": {
                "name": tool.get("name"),
                "description": tool.get("description") or "",
                "parameters": tool.get("input_schema") or {"type": "object"},
            },
        }
        for tool in body.get("tools") or ()
        if isinstance(tool, Mapping)
    ]
    chat: dict[str, Any] = {
        "model": body.get("model"),
        "messages": _messages(body),
        "max_tokens": max_tokens,
        "temperature": body.get("temperature"),
        "stream": bool(body.get("stream")),
    }
    if tools:
        chat["tools"] = tools
        chat["tool_choice"] = _tool_choice(body.get("tool_choice"))
    return orjson.dumps(chat), tuple(stop)


@dataclass(frozen=True)
class Stopped:
    """The answer after the stop sequences: its choice, and the sequence that cut it."""

    choice: Choice
    sequence: str | None


def stop_reason(stopped: Stopped) -> str:
    if stopped.sequence is not None:
        return "stop_sequence"
    return _STOP_REASONS.get(stopped.choice.finish_reason, "end_turn")


def content_blocks(choice: Choice) -> list[dict[str, Any]]:
    text = choice.content or choice.refusal or ""
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for call in choice.tool_calls:
        try:
            arguments = orjson.loads(call.arguments)
        except orjson.JSONDecodeError:
            arguments = {"arguments": call.arguments}
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
    return blocks


def message_body(
    message_id: str, model: str, stopped: Stopped, input_tokens: int, output_tokens: int
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content_blocks(stopped.choice),
        "stop_reason": stop_reason(stopped),
        "stop_sequence": stopped.sequence,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def event(name: str, payload: Mapping[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _block_events(index: int, block: Mapping[str, Any]) -> Iterator[tuple[bytes, bool]]:
    """One block's start, its deltas (generated output) and its stop."""
    start: dict[str, Any]
    if block["type"] == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in stream_pieces(block["text"], 3)]
    else:
        start = {**block, "input": {}}
        text = orjson.dumps(block["input"]).decode()
        deltas = [
            {"type": "input_json_delta", "partial_json": text[i : i + _ARGUMENT_PIECE_CHARS]}
            for i in range(0, len(text), _ARGUMENT_PIECE_CHARS)
        ]
    yield (
        event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
        ),
        False,
    )
    for delta in deltas:
        payload = {"type": "content_block_delta", "index": index, "delta": delta}
        yield event("content_block_delta", payload), True
    yield event("content_block_stop", {"type": "content_block_stop", "index": index}), False


def stream_events(body: Mapping[str, Any]) -> list[tuple[bytes, bool]]:
    """A whole message body as Anthropic's stream events, each marked when it carries
    generated output (the model's per-token time passes before it)."""
    usage = body["usage"]
    start = {**body, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {"input_tokens": usage["input_tokens"], "output_tokens": 1}
    events = [
        (event("message_start", {"type": "message_start", "message": start}), False),
        (event("ping", {"type": "ping"}), False),
    ]
    for index, block in enumerate(body["content"]):
        events.extend(_block_events(index, block))
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": body["stop_reason"], "stop_sequence": body["stop_sequence"]},
        "usage": {"output_tokens": usage["output_tokens"]},
    }
    events.append((event("message_delta", delta), False))
    events.append((event("message_stop", {"type": "message_stop"}), False))
    return events


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}

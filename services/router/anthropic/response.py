"""Answers and errors in Anthropic's shape: a `message` body with text and tool_use blocks,
`stop_reason` and `usage`, Sluice's `sluice` field (the same as the OpenAI door's), and the
`{"type": "error", "error": {...}}` body with Anthropic's statuses.

Admission names fields as the OpenAI door reports them; `in_messages_terms` renames them to
where the caller wrote them (turn N may be message M's tool result, a tool's schema is its
`input_schema`).
"""

from __future__ import annotations

import json
import re
from typing import Any

import grpc

from services.router.anthropic.request import MessagesCall
from services.router.model import RouteResult
from services.router.openai.response import sluice_extras
from shared.chat import Choice, Finish, ToolCall
from shared.errors import SluiceError

_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    # Anthropic's "overloaded": the SDK retries it, as it should an unavailable upstream.
    grpc.StatusCode.UNAVAILABLE: (529, "overloaded_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout_error"),
}
STOP_REASONS = {
    Finish.STOP: "end_turn",
    Finish.LENGTH: "max_tokens",
    Finish.TOOL_CALLS: "tool_use",
    Finish.CONTENT_FILTER: "refusal",
    Finish.UNKNOWN: "end_turn",
}
_TURN_PARAM = re.compile(r"^messages\[(\d+)\](?:\.content\[(\d+)\])?")
_RENAMED = (
    (re.compile(r"^tools\[(\d+)\]\.function\.parameters"), r"tools[\1].input_schema"),
    (re.compile(r"^tools\[(\d+)\]\.function\."), r"tools[\1]."),
    (re.compile(r"^stop\b"), "stop_sequences"),
    (re.compile(r"^user\b"), "metadata.user_id"),
)


def error_body(status_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": status_type, "message": message}}


def status_of(code: grpc.StatusCode) -> tuple[int, str]:
    return _STATUS.get(code, (500, "api_error"))


def _renamed(param: str, call: MessagesCall | None) -> str:
    for pattern, replacement in _RENAMED:
        param = pattern.sub(replacement, param)
    match = _TURN_PARAM.match(param)
    if call is None or match is None or int(match.group(1)) >= len(call.paths):
        return param
    turn = int(match.group(1))
    where = call.paths[turn]
    if match.group(2) is not None and int(match.group(2)) < len(call.part_blocks[turn]):
        where += f".content[{call.part_blocks[turn][int(match.group(2))]}]"
    return where + param[match.end() :]


def in_messages_terms(error: SluiceError, call: MessagesCall | None) -> tuple[str, str | None]:
    """The error's message and field, named as this door's caller wrote the request."""
    message, param = str(error), getattr(error, "param", None)
    if param is None:
        return message, None
    renamed = _renamed(param, call)
    if message.startswith(param):
        return renamed + message[len(param) :], renamed
    # Anthropic's body has no field of its own for the parameter, so the message leads with it.
    return f"{renamed}: {message}", renamed


def error_of(error: SluiceError, call: MessagesCall | None = None) -> tuple[int, dict[str, Any]]:
    status, kind = status_of(error.code)
    message, _ = in_messages_terms(error, call)
    return status, error_body(kind, message)


def stop_reason(choice: Choice) -> str:
    """Anthropic's stop reason. A stop at one of the caller's stop sequences is `stop_sequence`
    when the tier's provider named the sequence (Anthropic, vLLM, the simulator); OpenAI's own
    API does not, and such a stop reads `end_turn`."""
    if choice.finish is Finish.STOP and choice.stop_sequence:
        return "stop_sequence"
    return STOP_REASONS[choice.finish]


def stop_sequence(choice: Choice) -> str | None:
    return choice.stop_sequence if stop_reason(choice) == "stop_sequence" else None


def tool_input(call: ToolCall) -> dict[str, Any]:
    """The call's arguments as an object; text that is not one (only a last tier's answer can
    carry it past the tool gate) is kept whole under `arguments` rather than dropped."""
    try:
        parsed = json.loads(call.arguments) if call.arguments else {}
    except json.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"arguments": call.arguments}


def content_blocks(choice: Choice) -> list[dict[str, Any]]:
    """Text (and refusal text, which Anthropic sends as text) first, then each tool call."""
    blocks: list[dict[str, Any]] = []
    text = choice.content + choice.refusal
    if text:
        blocks.append({"type": "text", "text": text})
    for call in choice.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input(call)}
        )
    return blocks


def usage_json(result: RouteResult) -> dict[str, int]:
    """Anthropic counts cached prompt tokens apart from `input_tokens`."""
    usage = result.usage
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    return {
        "input_tokens": usage.input_tokens - cached,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def message_id(request_id: str) -> str:
    return f"msg_{request_id}"


def message_body(result: RouteResult, trace_id: str) -> dict[str, Any]:
    choice = result.all_choices()[0]
    return {
        "id": message_id(result.request_id),
        "type": "message",
        "role": "assistant",
        "model": result.model,
        "content": content_blocks(choice),
        "stop_reason": stop_reason(choice),
        "stop_sequence": stop_sequence(choice),
        "usage": usage_json(result),
        "sluice": sluice_extras(result, trace_id),
    }

"""`messages` of an OpenAI chat-completions request, read into turns: roles (developer is
system), text and image parts, an assistant's tool calls and refusal, a tool's result.

The checks that need the whole request, or that the gRPC door needs too (tool results that
answer an earlier call, image parts a tier cannot take), are admission's (admission_checks.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.router.admission_checks import bad
from services.router.openai.values import array, mapping, only_keys, string
from shared.chat import ContentPart, ImagePart, Role, ToolCall, Turn
from shared.errors import quoted

ROLES = {
    "system": Role.SYSTEM,
    "developer": Role.SYSTEM,
    "user": Role.USER,
    "assistant": Role.ASSISTANT,
    "tool": Role.TOOL,
}
_FIELDS = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "refusal", "tool_calls"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
}
# Fields of the API Sluice turns away, with why.
_REFUSED_FIELDS = {
    "audio": "is not supported by this gateway: it answers in text only",
    "function_call": "is deprecated and not supported; use tool_calls",
}
_REFUSED_PARTS = {
    "input_audio": "is not supported by this gateway: it takes text and image_url parts only",
    "file": "is not supported by this gateway: it takes text and image_url parts only",
}
# Which part types each role may send (OpenAI's message types).
_PART_TYPES = {"user": ("text", "image_url"), "assistant": ("text", "refusal")}


def _image(where: str, raw: Any) -> ImagePart:
    if not isinstance(raw, Mapping):
        raise bad(f"{where}.image_url", "must be an object holding `url`")
    only_keys(raw, frozenset({"url", "detail"}), f"{where}.image_url")
    url = string(raw, "url", f"{where}.image_url.")
    if not url:
        raise bad(f"{where}.image_url.url", "must be a non-empty URL")
    return ImagePart(url, string(raw, "detail", f"{where}.image_url.") or "")


def _parts(where: str, role: str, raw: list[Any]) -> tuple[list[ContentPart], list[str]]:
    """The content parts (text and images, in order) and any refusal parts' text."""
    parts: list[ContentPart] = []
    refusals: list[str] = []
    allowed = _PART_TYPES.get(role, ("text",))
    for index, part in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(part, Mapping):
            raise bad(at, "must be a content part object")
        kind = part.get("type")
        if kind in _REFUSED_PARTS:
            raise bad(f"{at}.type", f"{kind!r} {_REFUSED_PARTS[kind]}")
        if kind not in allowed:
            raise bad(f"{at}.type", f"{quoted(kind)} is not one of {', '.join(allowed)} here")
        if kind == "image_url":
            parts.append(_image(at, part.get("image_url")))
            continue
        text = part.get(kind)
        if not isinstance(text, str):
            raise bad(f"{at}.{kind}", "must be a string")
        (refusals if kind == "refusal" else parts).append(text)
    return parts, refusals


def _content(
    where: str, role: str, message: Mapping[str, Any]
) -> tuple[str, tuple[ContentPart, ...], str]:
    """The turn's text, its parts when it holds an image, and refusal text from parts."""
    raw = message.get("content")
    if isinstance(raw, str):
        return raw, (), ""
    if raw is None:
        if role == "assistant" and (message.get("tool_calls") or message.get("refusal")):
            return "", (), ""
        raise bad(f"{where}.content", "is required (null only with tool_calls or a refusal)")
    if not isinstance(raw, list):
        raise bad(f"{where}.content", "must be a string or a list of content parts")
    parts, refusals = _parts(f"{where}.content", role, raw)
    text = "".join(part for part in parts if isinstance(part, str))
    with_image = any(isinstance(part, ImagePart) for part in parts)
    return text, tuple(parts) if with_image else (), "".join(refusals)


def _tool_calls(where: str, message: Mapping[str, Any]) -> tuple[ToolCall, ...]:
    raw = array(message, "tool_calls", f"{where}.")
    calls = []
    for index, call in enumerate(raw or ()):
        at = f"{where}.tool_calls[{index}]"
        if not isinstance(call, Mapping):
            raise bad(at, "must be an object")
        if call.get("type", "function") != "function":
            raise bad(f"{at}.type", f"{quoted(call.get('type'))} is not supported; use function")
        only_keys(call, frozenset({"id", "type", "function"}), at)
        function = mapping(call, "function", f"{at}.") or {}
        only_keys(function, frozenset({"name", "arguments"}), f"{at}.function")
        arguments = string(function, "arguments", f"{at}.function.")
        calls.append(
            ToolCall(
                string(call, "id", f"{at}.") or "",
                string(function, "name", f"{at}.function.") or "",
                arguments or "",
            )
        )
    return tuple(calls)


def _turn(index: int, message: Any) -> Turn:
    where = f"messages[{index}]"
    if not isinstance(message, Mapping):
        raise bad(where, "must be an object")
    role = message.get("role")
    if role == "function":
        raise bad(f"{where}.role", "'function' is deprecated and not supported; use tool messages")
    if not isinstance(role, str) or role not in ROLES:
        raise bad(f"{where}.role", f"{quoted(role)} is not one of {', '.join(sorted(ROLES))}")
    for key in message:
        if key in _REFUSED_FIELDS and message[key] is not None:
            raise bad(f"{where}.{key}", _REFUSED_FIELDS[key])
    only_keys(message, _FIELDS[role] | frozenset(_REFUSED_FIELDS), where)
    content, parts, refused = _content(where, role, message)
    return Turn(
        ROLES[role],
        content,
        string(message, "name", f"{where}.") or "",
        parts=parts,
        tool_calls=_tool_calls(where, message) if role == "assistant" else (),
        tool_call_id=string(message, "tool_call_id", f"{where}.") or "",
        refusal=(string(message, "refusal", f"{where}.") or "") + refused,
    )


def read_turns(raw: Any) -> tuple[Turn, ...]:
    if not isinstance(raw, list) or not raw:
        raise bad("messages", "must be a non-empty list")
    return tuple(_turn(index, message) for index, message in enumerate(raw))

"""`system` and `messages` of an Anthropic Messages request, read into turns.

Anthropic puts tool results inside user messages and tool calls inside assistant messages, as
content blocks; Sluice's turns are OpenAI's, so a user message's `tool_result` blocks become
tool turns (answering the call named by `tool_use_id`) before the turn that holds its text and
images, and an assistant message's `tool_use` blocks become its tool calls. Each turn remembers
where it came from (`Read.paths`), so an error admission finds later names the field as the
caller wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.router.admission_checks import bad
from services.router.openai.values import boolean, mapping, only_keys, string
from shared.chat import ContentPart, ImagePart, Role, ToolCall, Turn
from shared.errors import quoted

# `cache_control` is a prompt-caching hint to Anthropic: it changes what a call costs, never
# its answer, and the gateway's tiers are not all Anthropic models, so it is accepted and left.
_TEXT_FIELDS = frozenset({"type", "text", "cache_control", "citations"})
_IMAGE_FIELDS = frozenset({"type", "source", "cache_control"})
_TOOL_USE_FIELDS = frozenset({"type", "id", "name", "input", "cache_control"})
_TOOL_RESULT_FIELDS = frozenset({"type", "tool_use_id", "content", "is_error", "cache_control"})
_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# Which block types each role may send.
_BLOCK_TYPES = {
    "user": ("text", "image", "tool_result"),
    "assistant": ("text", "tool_use"),
}
_NOT_HERE = "is not supported by this gateway"
_REFUSED_BLOCKS = {
    "document": f"{_NOT_HERE}: it takes text, image, tool_use and tool_result blocks",
    "thinking": f"{_NOT_HERE}: its tiers are not all models that think",
    "redacted_thinking": f"{_NOT_HERE}: its tiers are not all models that think",
    "server_tool_use": f"{_NOT_HERE}: its tiers run no server tools",
    "search_result": f"{_NOT_HERE}: it takes text, image, tool_use and tool_result blocks",
}


@dataclass
class Read:
    """The turns read so far, each with the request field it came from."""

    turns: list[Turn] = field(default_factory=list)
    # For each turn, where it came from ("system", "messages[2]"), and for its parts, the
    # block each came from.
    paths: list[str] = field(default_factory=list)
    part_blocks: list[tuple[int, ...]] = field(default_factory=list)
    # Ids of tool_use blocks seen so far: a tool_result must answer one of them.
    calls: set[str] = field(default_factory=set)

    def add(self, turn: Turn, path: str, part_blocks: tuple[int, ...] = ()) -> None:
        self.turns.append(turn)
        self.paths.append(path)
        self.part_blocks.append(part_blocks)


def _text(where: str, block: Mapping[str, Any]) -> str:
    only_keys(block, _TEXT_FIELDS, where)
    text = block.get("text")
    if not isinstance(text, str) or not text:
        raise bad(f"{where}.text", "must be a non-empty string")
    return text


def _image(where: str, block: Mapping[str, Any]) -> ImagePart:
    """An image block as an image part: base64 data as a data: URL, a URL as it is."""
    only_keys(block, _IMAGE_FIELDS, where)
    source = mapping(block, "source", f"{where}.")
    if source is None:
        raise bad(f"{where}.source", "is required")
    at = f"{where}.source"
    kind = source.get("type")
    if kind == "url":
        only_keys(source, frozenset({"type", "url"}), at)
        url = string(source, "url", f"{at}.") or ""
        if not url.startswith(("https://", "http://")):
            raise bad(f"{at}.url", f"{quoted(url)} must be an http(s) URL")
        return ImagePart(url)
    if kind == "base64":
        only_keys(source, frozenset({"type", "media_type", "data"}), at)
        media = string(source, "media_type", f"{at}.") or ""
        if media not in _MEDIA_TYPES:
            raise bad(f"{at}.media_type", f"{quoted(media)} is not one of {sorted(_MEDIA_TYPES)}")
        data = string(source, "data", f"{at}.") or ""
        if not data:
            raise bad(f"{at}.data", "must be non-empty base64 data")
        return ImagePart(f"data:{media};base64,{data}")
    raise bad(f"{at}.type", f"{quoted(kind)} is not base64 or url")


def _tool_call(where: str, block: Mapping[str, Any]) -> ToolCall:
    only_keys(block, _TOOL_USE_FIELDS, where)
    call_id = string(block, "id", f"{where}.") or ""
    name = string(block, "name", f"{where}.") or ""
    if not call_id:
        raise bad(f"{where}.id", "is required; a tool_result answers a tool_use by its id")
    if not name:
        raise bad(f"{where}.name", "is required")
    tool_input = mapping(block, "input", f"{where}.")
    if tool_input is None:
        raise bad(f"{where}.input", "is required (an object)")
    return ToolCall(call_id, name, orjson.dumps(tool_input).decode())


def _result_text(where: str, block: Mapping[str, Any]) -> str:
    """A tool_result's content: a string, or text blocks joined."""
    raw = block.get("content")
    if raw is None or isinstance(raw, str):
        return raw or ""
    if not isinstance(raw, list):
        raise bad(f"{where}.content", "must be a string or a list of text blocks")
    texts = []
    for index, inner in enumerate(raw):
        at = f"{where}.content[{index}]"
        if not isinstance(inner, Mapping) or inner.get("type") != "text":
            kind = inner.get("type") if isinstance(inner, Mapping) else None
            raise bad(f"{at}.type", f"{quoted(kind)} {_NOT_HERE} in a tool_result; send text")
        texts.append(_text(at, inner))
    return "".join(texts)


def _tool_turn(where: str, block: Mapping[str, Any], read: Read) -> Turn:
    only_keys(block, _TOOL_RESULT_FIELDS, where)
    answered = string(block, "tool_use_id", f"{where}.") or ""
    if answered not in read.calls:
        raise bad(
            f"{where}.tool_use_id",
            f"{quoted(answered)} answers no tool_use block of an earlier assistant message",
        )
    text = _result_text(where, block)
    # OpenAI's tool turns have no error flag; the text says so, as a model reads it either way.
    if boolean(block, "is_error", f"{where}."):
        text = f"Error: {text}"
    return Turn(Role.TOOL, text, tool_call_id=answered)


def _blocks(where: str, role: str, raw: list[Any], read: Read) -> None:
    """One message's blocks: its tool results as tool turns, then its own turn."""
    parts: list[ContentPart] = []
    blocks: list[int] = []
    calls: list[ToolCall] = []
    allowed = _BLOCK_TYPES[role]
    for index, block in enumerate(raw):
        at = f"{where}.content[{index}]"
        if not isinstance(block, Mapping):
            raise bad(at, "must be a content block object")
        kind = block.get("type")
        if isinstance(kind, str) and kind in _REFUSED_BLOCKS:
            raise bad(f"{at}.type", f"{kind!r} {_REFUSED_BLOCKS[kind]}")
        if kind not in allowed:
            raise bad(f"{at}.type", f"{quoted(kind)} is not one of {', '.join(allowed)} here")
        if kind == "tool_result":
            read.add(_tool_turn(at, block, read), at)
        elif kind == "tool_use":
            calls.append(_tool_call(at, block))
        else:
            parts.append(_text(at, block) if kind == "text" else _image(at, block))
            blocks.append(index)
    read.calls.update(call.id for call in calls)
    if not parts and not calls:
        return
    text = "".join(part for part in parts if isinstance(part, str))
    with_image = any(isinstance(part, ImagePart) for part in parts)
    turn = Turn(Role(role), text, parts=tuple(parts) if with_image else (), tool_calls=tuple(calls))
    read.add(turn, where, tuple(blocks) if with_image else ())


def _message(index: int, message: Any, read: Read, previous: str) -> str:
    where = f"messages[{index}]"
    if not isinstance(message, Mapping):
        raise bad(where, "must be an object")
    only_keys(message, frozenset({"role", "content"}), where)
    role = message.get("role")
    if role not in _BLOCK_TYPES:
        raise bad(f"{where}.role", f"{quoted(role)} is not user or assistant")
    if role == previous or (not previous and role != "user"):
        before = f"messages[{index - 1}] is also {role}" if previous else "the first is the user's"
        raise bad(f"{where}.role", f"must alternate between user and assistant: {before}")
    content = message.get("content")
    if isinstance(content, str):
        if not content:
            raise bad(f"{where}.content", "is empty; send text or content blocks")
        read.add(Turn(Role(role), content), where)
    elif isinstance(content, list):
        if not content:
            raise bad(f"{where}.content", "is empty; send text or content blocks")
        _blocks(where, role, content, read)
    else:
        raise bad(f"{where}.content", "must be a string or a list of content blocks")
    return str(role)


def _system(raw: Any, read: Read) -> None:
    if raw is None:
        return
    if isinstance(raw, str):
        if raw:
            read.add(Turn(Role.SYSTEM, raw), "system")
        return
    if not isinstance(raw, list):
        raise bad("system", "must be a string or a list of text blocks")
    texts = []
    for index, block in enumerate(raw):
        at = f"system[{index}]"
        if not isinstance(block, Mapping) or block.get("type") != "text":
            kind = block.get("type") if isinstance(block, Mapping) else None
            raise bad(f"{at}.type", f"{quoted(kind)} is not text; system takes text blocks")
        texts.append(_text(at, block))
    if texts:
        read.add(Turn(Role.SYSTEM, "\n\n".join(texts)), "system")


def read_conversation(system: Any, messages: Any) -> Read:
    """The request's turns: the system prompt, then each message's tool results and turn."""
    if not isinstance(messages, list) or not messages:
        raise bad("messages", "must be a non-empty list")
    read = Read()
    _system(system, read)
    previous = ""
    for index, message in enumerate(messages):
        previous = _message(index, message, read, previous)
    if previous != "user":
        raise bad(
            f"messages[{len(messages) - 1}].role",
            f"is {previous}; the last message must be the user's (a prefilled assistant "
            "answer is not supported by this gateway)",
        )
    return read

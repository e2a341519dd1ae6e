"""The Anthropic Messages wire format as a client speaks it, both ways: a request body built
from Sluice's turns (which are OpenAI's), and the answer read from a whole `message` body or
assembled from its stream events. The dispatcher calls `provider: anthropic` endpoints with it.

Shapes follow the API reference for `POST /v1/messages`: the system prompt is a top-level
field; tool results are `tool_result` blocks in a user message and tool calls `tool_use`
blocks in an assistant one; roles alternate, so consecutive turns of one side share a message;
`max_tokens` is required; `usage.input_tokens` leaves out the tokens read from or written to
the prompt cache, which Sluice's TokenUsage counts inside input_tokens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.chat import (
    Choice,
    ChoiceDelta,
    Finish,
    ImagePart,
    ResponseFormat,
    Role,
    Sampling,
    ToolCall,
    ToolCallDelta,
    ToolChoiceMode,
    ToolSet,
    Turn,
)
from shared.pricing import TokenUsage

# Sent on every call: the Messages API version these shapes follow.
API_VERSION = "2023-06-01"
# The API requires max_tokens; a call that names none gets this.
DEFAULT_MAX_TOKENS = 4096
FINISHES = {
    "end_turn": Finish.STOP,
    "stop_sequence": Finish.STOP,
    "pause_turn": Finish.STOP,
    "max_tokens": Finish.LENGTH,
    "model_context_window_exceeded": Finish.LENGTH,
    "tool_use": Finish.TOOL_CALLS,
    "refusal": Finish.CONTENT_FILTER,
}
_TOOL_CHOICES = {
    ToolChoiceMode.AUTO: "auto",
    ToolChoiceMode.REQUIRED: "any",
    ToolChoiceMode.FUNCTION: "tool",
    ToolChoiceMode.NONE: "none",
}


def _image_block(part: ImagePart) -> dict[str, Any]:
    if part.url.startswith("data:") and ";base64," in part.url:
        media, data = part.url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": part.url}}


def _arguments(call: ToolCall) -> Any:
    try:
        parsed = json.loads(call.arguments) if call.arguments else {}
    except json.JSONDecodeError:
        return {"arguments": call.arguments}
    return parsed if isinstance(parsed, dict) else {"arguments": call.arguments}


def _blocks(turn: Turn) -> list[dict[str, Any]]:
    if turn.role is Role.TOOL:
        return [{"type": "tool_result", "tool_use_id": turn.tool_call_id, "content": turn.content}]
    blocks: list[dict[str, Any]] = []
    for part in turn.parts or ((turn.content,) if turn.content else ()):
        blocks.append(
            _image_block(part) if isinstance(part, ImagePart) else {"type": "text", "text": part}
        )
    if turn.refusal:
        blocks.append({"type": "text", "text": turn.refusal})
    for call in turn.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": _arguments(call)}
        )
    return blocks


def messages_json(turns: tuple[Turn, ...]) -> tuple[str, list[dict[str, Any]]]:
    """The system prompt and the alternating messages (a tool turn speaks for the user)."""
    system = "\n\n".join(t.content for t in turns if t.role is Role.SYSTEM and t.content)
    messages: list[dict[str, Any]] = []
    for turn in turns:
        if turn.role is Role.SYSTEM:
            continue
        role = "assistant" if turn.role is Role.ASSISTANT else "user"
        blocks = _blocks(turn)
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})
    return system, messages


def tools_json(tools: ToolSet) -> dict[str, Any]:
    if not tools.offered:
        return {}
    choice: dict[str, Any] = {"type": _TOOL_CHOICES[tools.choice]}
    if tools.choice is ToolChoiceMode.FUNCTION:
        choice["name"] = tools.function_name
    if tools.parallel_tool_calls is False and tools.choice is not ToolChoiceMode.NONE:
        choice["disable_parallel_tool_use"] = True
    return {
        "tools": [
            {
                "name": function.name,
                "description": function.description,
                "input_schema": json.loads(function.parameters_json or '{"type": "object"}'),
            }
            for function in tools.functions
        ],
        "tool_choice": choice,
    }


def messages_body(
    model: str,
    turns: tuple[Turn, ...],
    sampling: Sampling,
    response_format: ResponseFormat,
    tools: ToolSet,
    *,
    end_user: str = "",
) -> dict[str, Any]:
    """A Messages body without `stream`. The API has no JSON mode, so a JSON format is asked
    for in the system prompt (the router's JSON gate checks what comes back)."""
    system, messages = messages_json(turns)
    if response_format.wants_json:
        schema = f" matching this JSON Schema: {response_format.json_schema}"
        ask = f"Answer with one JSON object only{schema if response_format.json_schema else ''}."
        system = f"{system}\n\n{ask}" if system else ask
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": sampling.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    optional = {
        "system": system or None,
        # OpenAI's temperature runs to 2, Anthropic's to 1.
        "temperature": None if sampling.temperature is None else min(sampling.temperature, 1.0),
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "stop_sequences": list(sampling.stop) or None,
        "metadata": {"user_id": end_user} if end_user else None,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    body.update(tools_json(tools))
    return body


def usage_from(raw: Any) -> TokenUsage:
    """Anthropic's usage as Sluice counts it: cache reads and writes inside input_tokens."""
    raw = raw if isinstance(raw, Mapping) else {}
    read = int(raw.get("cache_read_input_tokens") or 0)
    written = int(raw.get("cache_creation_input_tokens") or 0)
    plain = int(raw.get("input_tokens") or 0)
    return TokenUsage(plain + read + written, int(raw.get("output_tokens") or 0), read, written)


def finish_of(stop_reason: Any) -> Finish:
    return FINISHES.get(str(stop_reason), Finish.UNKNOWN)


def choice_from_message(message: Mapping[str, Any]) -> Choice:
    """A whole `message` body's content as one choice: its text, then its tool calls."""
    texts, calls = [], []
    for block in message.get("content") or ():
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            arguments = json.dumps(block.get("input") or {})
            calls.append(ToolCall(str(block.get("id") or ""), str(block.get("name")), arguments))
    return Choice(
        0,
        "".join(texts),
        finish_of(message.get("stop_reason")),
        tuple(calls),
        stop_sequence=_sequence(message.get("stop_sequence")),
    )


def _sequence(raw: Any) -> str:
    return raw if isinstance(raw, str) else ""


@dataclass
class StreamedMessage:
    """Assembles a message from its stream events and turns each into a piece (or None)."""

    model: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None
    stop_sequence: str = ""
    stopped: bool = False
    texts: list[str] = field(default_factory=list)
    calls: list[list[str]] = field(default_factory=list)
    # A block's index -> the tool call it holds (its position among the calls).
    _call_of_block: dict[int, int] = field(default_factory=dict)

    def add(self, event: Mapping[str, Any]) -> ChoiceDelta | None:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.model = str(message.get("model") or self.model)
            self.usage.update(message.get("usage") or {})
        elif kind == "content_block_start":
            return self._start(event)
        elif kind == "content_block_delta":
            return self._delta(event)
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            self.stop_reason = delta.get("stop_reason") or self.stop_reason
            self.stop_sequence = _sequence(delta.get("stop_sequence")) or self.stop_sequence
            self.usage.update(
                {k: v for k, v in (event.get("usage") or {}).items() if v is not None}
            )
        elif kind == "message_stop":
            self.stopped = True
        return None

    def _start(self, event: Mapping[str, Any]) -> ChoiceDelta | None:
        block = event.get("content_block") or {}
        if block.get("type") == "text" and block.get("text"):
            self.texts.append(str(block["text"]))
            return ChoiceDelta(0, content=str(block["text"]))
        if block.get("type") != "tool_use":
            return None
        position = len(self.calls)
        self._call_of_block[int(event.get("index") or 0)] = position
        self.calls.append([str(block.get("id") or ""), str(block.get("name") or ""), ""])
        return ChoiceDelta(
            0, tool_calls=(ToolCallDelta(position, self.calls[-1][0], self.calls[-1][1]),)
        )

    def _delta(self, event: Mapping[str, Any]) -> ChoiceDelta | None:
        delta = event.get("delta") or {}
        if delta.get("type") == "text_delta":
            text = str(delta.get("text") or "")
            self.texts.append(text)
            return ChoiceDelta(0, content=text) if text else None
        position = self._call_of_block.get(int(event.get("index") or 0))
        if delta.get("type") != "input_json_delta" or position is None:
            return None
        piece = str(delta.get("partial_json") or "")
        self.calls[position][2] += piece
        return (
            ChoiceDelta(0, tool_calls=(ToolCallDelta(position, arguments=piece),))
            if piece
            else None
        )

    def choice(self) -> Choice:
        calls = tuple(ToolCall(i, n, a or "{}") for i, n, a in self.calls)
        return Choice(
            0,
            "".join(self.texts),
            finish_of(self.stop_reason),
            calls,
            stop_sequence=self.stop_sequence,
        )

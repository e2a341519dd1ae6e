"""The OpenAI chat-completions wire format as a client speaks it, both ways: a request body
(turns, tools, sampling, response format), and choices (text, tool calls, refusals, token
logprobs) read from a whole body or assembled from stream chunks. The dispatcher calls
providers with it and the batcher writes Batch API input files with it.

Shapes follow the API reference for `POST /v1/chat/completions`: an assistant turn that only
calls tools has `content: null`; a streamed tool call arrives as fragments keyed by `index`,
the first with the call's `id` and `function.name`, later ones adding `function.arguments`
text; each choice of `n` streams under its own `index` and ends with its own `finish_reason`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.chat import (
    Choice,
    ChoiceDelta,
    Finish,
    FormatKind,
    ImagePart,
    ResponseFormat,
    Role,
    Sampling,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    ToolChoiceMode,
    ToolFunction,
    ToolSet,
    TopLogprob,
    Turn,
)


def chat_body(
    model: str,
    turns: tuple[Turn, ...],
    sampling: Sampling,
    response_format: ResponseFormat,
    tools: ToolSet,
    *,
    end_user: str = "",
    gate_logprobs: bool = False,
) -> dict[str, Any]:
    """A chat-completions body without the streaming fields. gate_logprobs asks for logprobs
    the caller did not ask for, which the router's `logprob` gate reads."""
    body: dict[str, Any] = {"model": model, "messages": [message_json(t) for t in turns]}
    optional = {
        "max_tokens": sampling.max_tokens or None,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "stop": list(sampling.stop) or None,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    body.update(sampling_json(sampling, gate_logprobs=gate_logprobs))
    if response_format.kind is FormatKind.JSON_OBJECT:
        body["response_format"] = {"type": "json_object"}
    elif response_format.kind is FormatKind.JSON_SCHEMA:
        schema: dict[str, Any] = {
            "name": response_format.schema_name or "answer",
            "schema": orjson.loads(response_format.json_schema),
        }
        if response_format.strict:
            schema["strict"] = True
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    body.update(tools_json(tools))
    if end_user:
        body["user"] = end_user
    return body


def message_json(turn: Turn) -> dict[str, Any]:
    """One turn as an OpenAI message."""
    message: dict[str, Any] = {"role": turn.role.value}
    if turn.parts:
        message["content"] = [_part_json(part) for part in turn.parts]
    elif turn.tool_calls and not turn.content:
        message["content"] = None
    else:
        message["content"] = turn.content
    if turn.name:
        message["name"] = turn.name
    if turn.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in turn.tool_calls
        ]
    if turn.role is Role.TOOL:
        message["tool_call_id"] = turn.tool_call_id
    if turn.refusal:
        message["refusal"] = turn.refusal
    return message


def _part_json(part: str | ImagePart) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    image: dict[str, Any] = {"url": part.url}
    if part.detail:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def tools_json(tools: ToolSet) -> dict[str, Any]:
    """The body fields that offer tools; nothing when the request offers none."""
    if not tools.offered:
        return {}
    body: dict[str, Any] = {"tools": [_function_json(f) for f in tools.functions]}
    if tools.choice is ToolChoiceMode.FUNCTION:
        body["tool_choice"] = {"type": "function", "function": {"name": tools.function_name}}
    else:
        body["tool_choice"] = tools.choice.value
    if tools.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = tools.parallel_tool_calls
    return body


def _function_json(function: ToolFunction) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": function.name}
    if function.description:
        spec["description"] = function.description
    if function.parameters_json:
        spec["parameters"] = orjson.loads(function.parameters_json)
    if function.strict:
        spec["strict"] = True
    return {"type": "function", "function": spec}


def sampling_json(sampling: Sampling, *, gate_logprobs: bool) -> dict[str, Any]:
    """Sampling fields beyond temperature, top_p, max_tokens and stop."""
    body: dict[str, Any] = {}
    if sampling.n > 1:
        body["n"] = sampling.n
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.logprobs or gate_logprobs:
        body["logprobs"] = True
    if sampling.top_logprobs:
        body["top_logprobs"] = sampling.top_logprobs
    if sampling.presence_penalty is not None:
        body["presence_penalty"] = sampling.presence_penalty
    if sampling.frequency_penalty is not None:
        body["frequency_penalty"] = sampling.frequency_penalty
    return body


def token_logprobs(raw_choice: Mapping[str, Any]) -> tuple[TokenLogprob, ...]:
    """`logprobs.content[]` of a choice or chunk; () when absent or malformed (they are
    optional, and a malformed one must not cost the answer)."""
    raw = raw_choice.get("logprobs")
    content = raw.get("content") if isinstance(raw, Mapping) else None
    if not isinstance(content, list):
        return ()
    found = []
    for entry in content:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("logprob"), int | float):
            continue
        top = tuple(
            TopLogprob(str(t.get("token", "")), float(t["logprob"]), _bytes(t.get("bytes")))
            for t in entry.get("top_logprobs") or ()
            if isinstance(t, Mapping) and isinstance(t.get("logprob"), int | float)
        )
        token = str(entry.get("token", ""))
        found.append(TokenLogprob(token, float(entry["logprob"]), _bytes(entry.get("bytes")), top))
    return tuple(found)


def _bytes(raw: Any) -> bytes | None:
    if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        return bytes(raw)
    return None


def _tool_calls(raw: Any) -> tuple[ToolCall, ...]:
    calls = []
    for entry in raw if isinstance(raw, list) else ():
        function = entry.get("function") if isinstance(entry, Mapping) else None
        if isinstance(function, Mapping):
            calls.append(
                ToolCall(
                    str(entry.get("id") or ""),
                    str(function.get("name") or ""),
                    str(function.get("arguments") or ""),
                )
            )
    return tuple(calls)


def choice_from_body(raw_choice: Mapping[str, Any], position: int) -> Choice:
    """One choice of a whole (non-streamed) completion body."""
    message = raw_choice.get("message")
    if not isinstance(message, Mapping):
        raise ValueError("choice without a message")
    return Choice(
        index=_index(raw_choice, position),
        content=str(message.get("content") or ""),
        finish=Finish.parse(raw_choice.get("finish_reason")),
        tool_calls=_tool_calls(message.get("tool_calls")),
        refusal=str(message.get("refusal") or ""),
        logprobs=token_logprobs(raw_choice),
        stop_sequence=_stop_sequence(raw_choice),
    )


def _stop_sequence(raw_choice: Mapping[str, Any]) -> str:
    """The stop sequence that ended a choice. OpenAI does not say; vLLM (and the simulator)
    name it in the choice's `stop_reason` (an integer there is a stop token id, not text)."""
    found = raw_choice.get("stop_reason")
    return found if isinstance(found, str) else ""


def _index(raw_choice: Mapping[str, Any], default: int) -> int:
    index = raw_choice.get("index", default)
    return index if isinstance(index, int) and 0 <= index < 128 else default


@dataclass
class _CallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _ChoiceParts:
    content: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    calls: dict[int, _CallParts] = field(default_factory=dict)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish: str | None = None
    stop_sequence: str = ""


class StreamedChoices:
    """Assembles the choices of a streamed completion from its chunks."""

    def __init__(self) -> None:
        self._choices: dict[int, _ChoiceParts] = {}

    def add(self, raw_choice: Mapping[str, Any]) -> ChoiceDelta | None:
        """Takes one chunk's choice; returns the piece to pass on, or None if it adds nothing."""
        index = _index(raw_choice, 0)
        parts = self._choices.setdefault(index, _ChoiceParts())
        parts.finish = raw_choice.get("finish_reason") or parts.finish
        parts.stop_sequence = _stop_sequence(raw_choice) or parts.stop_sequence
        delta = raw_choice.get("delta")
        delta = delta if isinstance(delta, Mapping) else {}
        text = str(delta.get("content") or "")
        refusal = str(delta.get("refusal") or "")
        fragments = tuple(self._fragments(parts, delta.get("tool_calls")))
        logprobs = token_logprobs(raw_choice)
        parts.content.append(text)
        parts.refusal.append(refusal)
        parts.logprobs.extend(logprobs)
        if not (text or refusal or fragments or logprobs):
            return None
        return ChoiceDelta(index, text, fragments, refusal, logprobs)

    @staticmethod
    def _fragments(parts: _ChoiceParts, raw: Any) -> list[ToolCallDelta]:
        fragments = []
        for position, entry in enumerate(raw if isinstance(raw, list) else ()):
            if not isinstance(entry, Mapping):
                continue
            index = _index(entry, position)
            raw_function = entry.get("function")
            function = raw_function if isinstance(raw_function, Mapping) else {}
            call = parts.calls.setdefault(index, _CallParts())
            fragment = ToolCallDelta(
                index,
                str(entry.get("id") or ""),
                str(function.get("name") or ""),
                str(function.get("arguments") or ""),
            )
            call.id = call.id or fragment.id
            call.name = call.name or fragment.name
            call.arguments.append(fragment.arguments)
            fragments.append(fragment)
        return fragments

    @property
    def finished(self) -> bool:
        """Every choice seen has its finish_reason (and at least one was seen)."""
        return bool(self._choices) and all(c.finish for c in self._choices.values())

    def choices(self) -> tuple[Choice, ...]:
        return tuple(
            Choice(
                index=index,
                content="".join(parts.content),
                finish=Finish.parse(parts.finish),
                tool_calls=tuple(
                    ToolCall(call.id, call.name, "".join(call.arguments))
                    for _, call in sorted(parts.calls.items())
                ),
                refusal="".join(parts.refusal),
                logprobs=tuple(parts.logprobs),
                stop_sequence=parts.stop_sequence,
            )
            for index, parts in sorted(self._choices.items())
        )

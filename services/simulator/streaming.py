"""The chunks of a streamed reply, in OpenAI's order.

For each choice (`index` 0..n-1): a chunk whose delta carries the role; then its pieces —
`delta.content` of a few words each, `delta.refusal` for a refusal under a json_schema format,
or `delta.tool_calls` fragments (a call's first fragment has its `index`, `id`, `type`,
`function.name` and empty `arguments`; later ones its `index` and a piece of
`function.arguments`); then a chunk with an empty delta and the choice's `finish_reason`. With
several choices the pieces interleave, one piece of each in turn, as OpenAI's do. Only with
`stream_options.include_usage` does a last chunk with empty `choices` carry the usage. The app
adds `data: [DONE]` and the pacing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

from services.simulator.choices import Choice
from services.simulator.composer import Composed
from services.simulator.logprobs import logprobs_json
from services.simulator.wire import (
    Reply,
    delta_event,
    stop_reason_json,
    stream_pieces,
    usage_event,
)

# Tool-call arguments stream in pieces of this many characters (a few tokens each).
ARGUMENT_PIECE_CHARS = 16
_WORDS_PER_PIECE = 3


@dataclass(frozen=True)
class StreamStep:
    event: bytes
    # A piece of generated output: the model's per-token time passes before it.
    generated: bool


def _text_deltas(
    field: str, text: str, entries: list[tuple[str, float]] | None, top: int
) -> list[tuple[dict[str, Any], Mapping[str, Any] | None]]:
    pieces = list(stream_pieces(text, _WORDS_PER_PIECE)) or [""]
    deltas: list[tuple[dict[str, Any], Mapping[str, Any] | None]] = []
    for number, piece in enumerate(pieces):
        # Each piece is three words, so it carries those words' logprobs.
        mine = None if entries is None else entries[number * 3 : number * 3 + 3]
        logprobs = None if mine is None else logprobs_json(mine, top, field == "refusal")
        deltas.append(({field: piece}, logprobs))
    return deltas


def _call_deltas(choice: Choice) -> list[tuple[dict[str, Any], Mapping[str, Any] | None]]:
    deltas: list[tuple[dict[str, Any], Mapping[str, Any] | None]] = []
    for position, call in enumerate(choice.tool_calls):
        head = {
            "index": position,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        deltas.append(({"tool_calls": [head]}, None))
        arguments = call.arguments
        for start in range(0, len(arguments), ARGUMENT_PIECE_CHARS):
            piece = arguments[start : start + ARGUMENT_PIECE_CHARS]
            deltas.append(
                ({"tool_calls": [{"index": position, "function": {"arguments": piece}}]}, None)
            )
    return deltas


def _role_delta(choice: Choice) -> dict[str, Any]:
    if choice.tool_calls:
        return {"role": "assistant", "content": None}
    if choice.refusal is not None:
        return {"role": "assistant", "content": None, "refusal": ""}
    return {"role": "assistant", "content": ""}


def _deltas(
    choice: Choice, entries: list[tuple[str, float]] | None, top: int
) -> list[tuple[dict[str, Any], Mapping[str, Any] | None]]:
    if choice.tool_calls:
        return _call_deltas(choice)
    if choice.refusal is not None:
        return _text_deltas("refusal", choice.refusal, entries, top)
    return _text_deltas("content", choice.content or "", entries, top)


def stream_steps(
    reply: Reply, composed: Composed, top_logprobs: int, include_usage: bool
) -> list[StreamStep]:
    """Every chunk of the stream but `[DONE]`, in order."""
    choices: Sequence[Choice] = composed.choices
    logprobs = composed.logprobs
    steps = [StreamStep(delta_event(reply, _role_delta(c), index=c.index), False) for c in choices]
    per_choice = [
        _deltas(c, None if logprobs is None else logprobs[i], top_logprobs)
        for i, c in enumerate(choices)
    ]
    finished: set[int] = set()
    for round_ in zip_longest(*per_choice):
        for choice, delta in zip(choices, round_, strict=True):
            if delta is not None:
                body, entries = delta
                steps.append(
                    StreamStep(delta_event(reply, body, None, entries, choice.index), True)
                )
            elif choice.index not in finished:
                finished.add(choice.index)
                steps.append(StreamStep(_finish(reply, choice), False))
    steps += [StreamStep(_finish(reply, c), False) for c in choices if c.index not in finished]
    if include_usage:
        steps.append(StreamStep(usage_event(reply), False))
    return steps


def _finish(reply: Reply, choice: Choice) -> bytes:
    return delta_event(
        reply, {}, choice.finish_reason, index=choice.index, extra=stop_reason_json(choice)
    )

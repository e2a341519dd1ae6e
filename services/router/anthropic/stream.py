"""A request's stream, framed as Anthropic streams a message.

`message_start` (with the prompt's input tokens) and a `ping` open it; each content block is a
`content_block_start`, its `content_block_delta`s (`text_delta` for text, `input_json_delta`
pieces of a tool call's input) and a `content_block_stop`; `message_delta` carries the
`stop_reason` and the usage (with Sluice's `sluice` field beside them), and `message_stop` ends
it. Blocks are numbered in the order they open, as the SDK's accumulator indexes them.

What is held back is what the OpenAI door holds back (openai/stream.py): a tier whose gates
may still reject its answer shows nothing, and its accepted answer is sent whole from the
result; the last tier (and a cache hit, tier 0) is relayed as it arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from services.router.anthropic.response import (
    message_id,
    stop_reason,
    stop_sequence,
    usage_json,
)
from services.router.model import RouteResult, TierDelta
from services.router.openai.response import sluice_extras
from shared.chat import Choice, ChoiceDelta, ToolCallDelta

Event = tuple[str, dict[str, Any]]


def sse(events: list[Event]) -> bytes:
    """Named server-sent events, as Anthropic sends them."""
    return b"".join(
        b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        for name, data in events
    )


def _pieces(choice: Choice) -> ChoiceDelta:
    """An accepted answer as one piece."""
    return ChoiceDelta(
        content=choice.content + choice.refusal,
        tool_calls=tuple(
            ToolCallDelta(position, call.id, call.name, call.arguments)
            for position, call in enumerate(choice.tool_calls)
        ),
    )


class MessageFramer:
    """Turns one request's pipeline events into Anthropic stream events."""

    def __init__(
        self,
        request_id: str,
        input_tokens: int,
        live_tiers: frozenset[int],
        tier_models: Mapping[int, str],
    ) -> None:
        self._id = message_id(request_id)
        self._input_tokens = input_tokens
        self._live_tiers = live_tiers
        self._tier_models = tier_models
        self._started = False
        # Blocks opened so far; the open one is the last, unless `_open` is None.
        self._blocks = 0
        self._open: int | None = None
        self._text_block: int | None = None
        # A tool call's position in the answer -> its block.
        self._call_blocks: dict[int, int] = {}

    def _start(self, model: str) -> list[Event]:
        if self._started:
            return []
        self._started = True
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return [
            ("message_start", {"type": "message_start", "message": message}),
            ("ping", {"type": "ping"}),
        ]

    def _close_open(self) -> list[Event]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _open_block(self, block: dict[str, Any]) -> tuple[int, list[Event]]:
        events = self._close_open()
        index = self._open = self._blocks
        self._blocks += 1
        start = {"type": "content_block_start", "index": index, "content_block": block}
        return index, [*events, ("content_block_start", start)]

    @staticmethod
    def _delta(index: int, delta: dict[str, Any]) -> Event:
        payload = {"type": "content_block_delta", "index": index, "delta": delta}
        return ("content_block_delta", payload)

    def _text(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self._text_block is None or self._open != self._text_block:
            self._text_block, events = self._open_block({"type": "text", "text": ""})
        return [*events, self._delta(self._text_block, {"type": "text_delta", "text": text})]

    def _call(self, fragment: ToolCallDelta) -> list[Event]:
        events: list[Event] = []
        index = self._call_blocks.get(fragment.index)
        if index is None:
            block = {"type": "tool_use", "id": fragment.id, "name": fragment.name, "input": {}}
            index, events = self._open_block(block)
            self._call_blocks[fragment.index] = index
        if fragment.arguments:
            json_delta = {"type": "input_json_delta", "partial_json": fragment.arguments}
            events.append(self._delta(index, json_delta))
        return events

    def _piece(self, piece: ChoiceDelta) -> list[Event]:
        events: list[Event] = []
        if piece.content or piece.refusal:
            events += self._text(piece.content + piece.refusal)
        for fragment in piece.tool_calls:
            events += self._call(fragment)
        return events

    def delta(self, event: TierDelta) -> list[Event]:
        """The events to send now for a streamed piece: none while its tier may be rejected,
        and none for a choice other than the first (this API answers with one)."""
        piece = event.piece or ChoiceDelta(0, content=event.text)
        if event.tier not in self._live_tiers or piece.index != 0:
            return []
        events = self._start(self._tier_models.get(event.tier, ""))
        return events + self._piece(piece)

    def closing(self, result: RouteResult, trace_id: str) -> list[Event]:
        """The accepted answer's blocks not streamed yet, then the stop reason and usage."""
        choice = result.all_choices()[0]
        events = self._start(result.model)
        if not self._blocks:
            events += self._piece(_pieces(choice))
        events += self._close_open()
        delta = {
            "type": "message_delta",
            "delta": {
                "stop_reason": stop_reason(choice),
                "stop_sequence": stop_sequence(choice),
            },
            "usage": usage_json(result),
            "sluice": sluice_extras(result, trace_id),
        }
        return [*events, ("message_delta", delta), ("message_stop", {"type": "message_stop"})]

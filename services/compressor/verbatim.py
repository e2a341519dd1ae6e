"""Turns no strategy may shorten, and how a shortened turn keeps everything but its text.

The compressor sees tool schemas never (they are not in CompressRequest) and tool exchanges
often. A tool result is data the model is about to read and act on; an assistant turn that
called tools is the other half of that exchange, whose call ids the tool turns name; a turn with
an image holds parts no text strategy understands. Cutting any of them could break the
conversation's shape (a tool turn whose call is gone is refused by providers) or change what the
model is asked, so they pass through byte for byte, every field kept. A turn a strategy does
shorten keeps its other fields (name, refusal) through `with_content`.
"""

from __future__ import annotations

from dataclasses import replace

from shared.chat import Role, Turn


def verbatim_only(turn: Turn) -> bool:
    """True for a turn no strategy may change: a tool result, an assistant turn with tool
    calls, or a turn with image (or other non-text) parts."""
    return turn.role is Role.TOOL or bool(turn.tool_calls) or bool(turn.parts)


def with_content(turn: Turn, content: str) -> Turn:
    """The turn with new text and every other field as it was."""
    return replace(turn, content=content)

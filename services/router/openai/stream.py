"""A request's stream, framed as OpenAI streams chat completions.

For each choice: a first chunk whose delta carries `role`; chunks with `delta.content`,
`delta.tool_calls` fragments (index, id, type, function name, argument pieces) and
`delta.refusal`; the choice's last chunk with its `finish_reason`. The chunk that carries the
last finish_reason also carries Sluice's `sluice` field. With `stream_options.include_usage`
only, a last chunk with empty `choices` and the `usage` (every other chunk then has
`usage: null`). Then `data: [DONE]`, which the HTTP layer writes.

What a tier streams while its gates may still reject it is held back: OpenAI clients cannot
take text back, so nothing of a cheap tier is shown until its answer is accepted, and then the
accepted answer is sent at once from the result. The last tier is always accepted (as is a
cache hit, tier 0), so its pieces are relayed as they arrive.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.router.model import RouteResult, TierDelta
from services.router.openai.response import logprobs_json, sluice_extras, usage_json
from shared.chat import Choice, ChoiceDelta, ToolCallDelta


def _fragment_json(fragment: ToolCallDelta) -> dict[str, Any]:
    """A tool-call fragment: the first of a call carries id, type and name; later ones only
    add argument text."""
    function: dict[str, Any] = {"arguments": fragment.arguments}
    payload: dict[str, Any] = {"index": fragment.index}
    if fragment.id:
        payload.update(id=fragment.id, type="function")
    if fragment.name:
        function["name"] = fragment.name
    payload["function"] = function
    return payload


def _whole(choice: Choice) -> ChoiceDelta:
    """An accepted choice as one piece."""
    return ChoiceDelta(
        index=choice.index,
        content=choice.content,
        tool_calls=tuple(
            ToolCallDelta(position, call.id, call.name, call.arguments)
            for position, call in enumerate(choice.tool_calls)
        ),
        refusal=choice.refusal,
        logprobs=choice.logprobs,
    )


class StreamFramer:
    """Turns one request's pipeline events into OpenAI chunk payloads."""

    def __init__(
        self,
        request_id: str,
        created: int,
        live_tiers: frozenset[int],
        tier_models: Mapping[int, str],
        *,
        include_usage: bool = False,
        logprobs: bool = False,
    ) -> None:
        self._id = f"chatcmpl-{request_id}"
        self._created = created
        self._live_tiers = live_tiers
        self._tier_models = tier_models
        self._include_usage = include_usage
        self._logprobs = logprobs
        # Choices whose first chunk (the one with `role`) has gone out.
        self._opened: set[int] = set()

    def _chunk(self, model: str, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": model,
            "choices": choices,
        }
        if self._include_usage:
            payload["usage"] = None
        payload.update(extra)
        return payload

    def _piece_choice(self, piece: ChoiceDelta) -> dict[str, Any]:
        delta: dict[str, Any] = {}
        if piece.index not in self._opened:
            self._opened.add(piece.index)
            delta["role"] = "assistant"
            # OpenAI opens a choice with empty text, or null when it calls tools or refuses.
            delta["content"] = None if piece.tool_calls or piece.refusal else ""
        if piece.content:
            delta["content"] = piece.content
        if piece.tool_calls:
            delta["tool_calls"] = [_fragment_json(f) for f in piece.tool_calls]
        if piece.refusal:
            delta["refusal"] = piece.refusal
        logprobs = logprobs_json(piece.logprobs) if self._logprobs else None
        return {"index": piece.index, "delta": delta, "finish_reason": None, "logprobs": logprobs}

    def delta(self, event: TierDelta) -> list[dict[str, Any]]:
        """The chunks to send now for a streamed piece: none while its tier may be rejected."""
        if event.tier not in self._live_tiers:
            return []
        piece = event.piece or ChoiceDelta(0, content=event.text)
        model = self._tier_models.get(event.tier, "")
        return [self._chunk(model, [self._piece_choice(piece)])]

    def closing(self, result: RouteResult, trace_id: str) -> list[dict[str, Any]]:
        """The accepted answer's choices not streamed yet, each choice's finish_reason (the
        last with Sluice's extras), then the usage chunk when it was asked for."""
        choices = result.all_choices()
        chunks = [
            self._chunk(result.model, [self._piece_choice(_whole(choice))])
            for choice in choices
            if choice.index not in self._opened
        ]
        for position, choice in enumerate(choices):
            finish = {
                "index": choice.index,
                "delta": {},
                "finish_reason": choice.finish.value,
                "logprobs": None,
            }
            last = position == len(choices) - 1
            extra = {"sluice": sluice_extras(result, trace_id)} if last else {}
            chunks.append(self._chunk(result.model, [finish], **extra))
        if self._include_usage:
            chunks.append(self._chunk(result.model, [], usage=usage_json(result)))
        return chunks

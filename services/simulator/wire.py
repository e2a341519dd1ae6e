"""OpenAI chat-completions wire shapes: reply bodies, SSE chunks and errors.

Shapes follow the OpenAI API reference for `POST /v1/chat/completions` and the `openai` SDK's
types (`ChatCompletion`, `ChatCompletionChunk`): a streamed reply is a series of
`chat.completion.chunk` objects (streaming.py orders them), and only with
`stream_options.include_usage` a last chunk with empty `choices` and the `usage`. Request
parsing lives in parsing.py.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from services.simulator.choices import Choice
from shared.pricing import TokenUsage

_WORD_START = re.compile(r"(?<=\s)(?=\S)")
DONE_EVENT = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class Reply:
    """What goes into a completion body or stream, besides the choices."""

    completion_id: str
    created: int
    model: str
    usage: TokenUsage
    # OpenRouter-style `usage.cost` in USD; only recorded (replay) answers carry it.
    cost_usd: float | None = None

    @property
    def system_fingerprint(self) -> str:
        """Names the simulated backend; it changes only with the model, as a seed's promise of
        repeatable answers holds only while the fingerprint stays the same."""
        return "fp_sim_" + hashlib.sha256(self.model.encode()).hexdigest()[:10]


def usage_json(usage: TokenUsage, cost_usd: float | None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }
    if cost_usd is not None:
        payload["cost"] = cost_usd
    return payload


def message_json(choice: Choice) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": choice.content,
        "refusal": choice.refusal,
    }
    if choice.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in choice.tool_calls
        ]
    return message


def completion_body(
    reply: Reply,
    choices: Sequence[Choice],
    logprobs: Sequence[Mapping[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """A `chat.completion`; logprobs, when given, holds each choice's `logprobs` object."""
    return {
        "id": reply.completion_id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "system_fingerprint": reply.system_fingerprint,
        "choices": [
            {
                "index": choice.index,
                "message": message_json(choice),
                "finish_reason": choice.finish_reason,
                "logprobs": None if logprobs is None else logprobs[position],
                **stop_reason_json(choice),
            }
            for position, choice in enumerate(choices)
        ],
        "usage": usage_json(reply.usage, reply.cost_usd),
    }


def stop_reason_json(choice: Choice) -> dict[str, Any]:
    """vLLM's extension naming the stop sequence a choice ended on; absent otherwise."""
    return {"stop_reason": choice.stop_sequence} if choice.stop_sequence else {}


def sse_event(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _chunk(reply: Reply, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": reply.completion_id,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
        "system_fingerprint": reply.system_fingerprint,
        "choices": choices,
    }


def delta_event(
    reply: Reply,
    delta: Mapping[str, Any],
    finish_reason: str | None = None,
    logprobs: Mapping[str, Any] | None = None,
    index: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """One chunk carrying one choice's delta (and `extra` fields of the choice, if any)."""
    choice = {
        "index": index,
        "delta": dict(delta),
        "finish_reason": finish_reason,
        "logprobs": logprobs,
        **(extra or {}),
    }
    return sse_event(_chunk(reply, [choice]))


def usage_event(reply: Reply) -> bytes:
    return sse_event(_chunk(reply, []) | {"usage": usage_json(reply.usage, reply.cost_usd)})


def stream_pieces(text: str, words_per_piece: int = 3) -> Iterator[str]:
    """Splits text into pieces of a few words each; the pieces concatenate back to text."""
    words = _WORD_START.split(text)
    for start in range(0, len(words), words_per_piece):
        yield "".join(words[start : start + words_per_piece])


def error_body(
    message: str, code: str, kind: str = "invalid_request_error", param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def models_body(names: list[str]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "sluice-simulator"}
            for name in names
        ],
    }

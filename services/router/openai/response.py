"""Answers and errors in OpenAI's shape: a `chat.completion` body with every choice (text,
tool calls, refusal, token logprobs), usage, and Sluice's own `sluice` field and `x-sluice-*`
headers, which standard clients ignore."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc

from services.router.model import RouteResult
from shared.chat import Choice, TokenLogprob, ToolCall, TopLogprob
from shared.errors import SluiceError

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.NOT_FOUND: (404, "invalid_request_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "insufficient_quota"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout"),
}


def sluice_extras(result: RouteResult, trace_id: str) -> dict[str, Any]:
    """Sluice's own fields; standard clients ignore unknown keys."""
    return {
        "tier": result.tier,
        "cache_hit": result.cache_hit,
        "policy_version": result.policy_version,
        "trace_id": trace_id,
        "cost_usd": result.total_cost_nano_usd / 1e9,
        "baseline_model": result.baseline_model,
        "baseline_cost_usd": result.baseline_cost_nano_usd / 1e9,
        "cost_avoided_usd": result.cost_avoided_nano_usd / 1e9,
        "stages": [
            {
                "stage": line.stage.value,
                "outcome": line.outcome.value,
                "tier": line.tier,
                "model": line.model,
                "region": line.region,
                "detail": line.detail,
                "cost_usd": line.cost_nano_usd / 1e9,
            }
            for line in result.lines
        ],
    }


def sluice_headers(result: RouteResult, trace_id: str) -> dict[str, str]:
    return {
        "x-sluice-cost-usd": f"{result.total_cost_nano_usd / 1e9:.9f}",
        "x-sluice-cost-avoided-usd": f"{result.cost_avoided_nano_usd / 1e9:.9f}",
        "x-sluice-tier": str(result.tier),
        "x-sluice-cache": "hit" if result.cache_hit else "miss",
        "x-sluice-trace-id": trace_id,
        "x-sluice-policy-version": result.policy_version,
    }


def usage_json(result: RouteResult) -> dict[str, int]:
    usage = result.usage
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def _top_json(entry: TopLogprob | TokenLogprob) -> dict[str, Any]:
    raw = entry.token_bytes if entry.token_bytes is not None else entry.token.encode()
    return {"token": entry.token, "logprob": entry.logprob, "bytes": list(raw)}


def logprobs_json(entries: Iterable[TokenLogprob]) -> dict[str, Any]:
    """A choice's `logprobs` object (refusal tokens are not scored separately)."""
    return {
        "content": [
            {**_top_json(entry), "top_logprobs": [_top_json(top) for top in entry.top]}
            for entry in entries
        ],
        "refusal": None,
    }


def tool_call_json(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def message_json(choice: Choice) -> dict[str, Any]:
    """The assistant message of a choice: `content` is null when the choice only calls tools
    or refuses, as OpenAI sends it."""
    silent = not choice.content and bool(choice.tool_calls or choice.refusal)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if silent else choice.content,
        "refusal": choice.refusal or None,
    }
    if choice.tool_calls:
        message["tool_calls"] = [tool_call_json(call) for call in choice.tool_calls]
    return message


def completion_body(
    result: RouteResult, trace_id: str, created: int, *, logprobs: bool = False
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{result.request_id}",
        "object": "chat.completion",
        "created": created,
        "model": result.model,
        "choices": [
            {
                "index": choice.index,
                "message": message_json(choice),
                "finish_reason": choice.finish.value,
                "logprobs": logprobs_json(choice.logprobs) if logprobs else None,
            }
            for choice in result.all_choices()
        ],
        "usage": usage_json(result),
        "sluice": sluice_extras(result, trace_id),
    }


def error_body(
    code: grpc.StatusCode, message: str, param: str | None = None, kind: str | None = None
) -> tuple[int, dict[str, Any]]:
    """The HTTP status and OpenAI error body; `kind` overrides the error's `code` name."""
    status, category = _HTTP_STATUS.get(code, (500, "server_error"))
    return status, {
        "error": {
            "message": message,
            "type": category,
            "param": param,
            "code": kind or code.name.lower(),
        }
    }


def error_of(error: SluiceError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and OpenAI error body of a domain error (its field, if it names one)."""
    return error_body(error.code, str(error), getattr(error, "param", None))

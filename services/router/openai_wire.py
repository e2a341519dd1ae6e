"""The OpenAI chat-completions wire format of the HTTP front door: parsing requests into
admission arguments, and rendering results, stream chunks and errors."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from services.router.model import CacheMode, RouteResult
from shared.chat import FormatKind, ResponseFormat, Role, Sampling, Turn
from shared.errors import InvalidRequest

_ROLES = {role.value: role for role in Role} | {"developer": Role.SYSTEM}
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "insufficient_quota"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout"),
}


@dataclass(frozen=True)
class ChatCall:
    """An OpenAI request, translated for admission."""

    model_class: str
    turns: tuple[Turn, ...]
    sampling: Sampling
    response_format: ResponseFormat
    stream: bool
    cache_mode: CacheMode | None


def _content(index: int, raw: Any) -> str:
    """Message content is a string or a list of parts; only text parts are supported."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and all(
        isinstance(p, Mapping) and p.get("type") == "text" for p in raw
    ):
        return "".join(str(p.get("text", "")) for p in raw)
    raise InvalidRequest(f"messages[{index}].content must be a string or a list of text parts")


def _turns(raw: Any) -> tuple[Turn, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("messages must be a non-empty list")
    turns = []
    for index, message in enumerate(raw):
        if not isinstance(message, Mapping):
            raise InvalidRequest(f"messages[{index}] must be an object")
        role = _ROLES.get(str(message.get("role")))
        if role is None:
            raise InvalidRequest(f"messages[{index}].role {message.get('role')!r} is not supported")
        turns.append(
            Turn(role, _content(index, message.get("content")), str(message.get("name") or ""))
        )
    return tuple(turns)


def _number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{key} must be a number")
    return float(value)


def _sampling(body: Mapping[str, Any]) -> Sampling:
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens")) or 0
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise InvalidRequest("max_tokens must be an integer")
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else stop
    if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop):
        raise InvalidRequest("stop must be a string or a list of strings")
    return Sampling(_number(body, "temperature"), _number(body, "top_p"), max_tokens, tuple(stop))


def _response_format(raw: Any) -> ResponseFormat:
    if raw is None:
        return ResponseFormat()
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if kind == "text":
        return ResponseFormat()
    if kind == "json_object":
        return ResponseFormat(FormatKind.JSON_OBJECT)
    if kind == "json_schema":
        schema = (raw.get("json_schema") or {}).get("schema")
        if not isinstance(schema, Mapping):
            raise InvalidRequest("response_format.json_schema.schema must be an object")
        return ResponseFormat(FormatKind.JSON_SCHEMA, json.dumps(schema))
    raise InvalidRequest("response_format.type must be text, json_object or json_schema")


def parse_chat_request(body: Any) -> ChatCall:
    """Validates an OpenAI chat-completions body; errors name the field."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("the request body must be a JSON object")
    model = str(body.get("model") or "")
    # `model` names a Sluice model class; "auto" (or nothing) means the tenant's default class.
    model_class = "" if model in ("", "auto") else model
    sluice = body.get("sluice") or {}
    cache_mode = (
        CacheMode.BYPASS if isinstance(sluice, Mapping) and sluice.get("cache") is False else None
    )
    return ChatCall(
        model_class=model_class,
        turns=_turns(body.get("messages")),
        sampling=_sampling(body),
        response_format=_response_format(body.get("response_format")),
        stream=bool(body.get("stream")),
        cache_mode=cache_mode,
    )


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


def _usage(result: RouteResult) -> dict[str, int]:
    usage = result.usage
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def completion_body(result: RouteResult, trace_id: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{result.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": result.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.content},
                "finish_reason": result.finish.value,
                "logprobs": None,
            }
        ],
        "usage": _usage(result),
        "sluice": sluice_extras(result, trace_id),
    }


def chunk(
    request_id: str, model: str, delta: Mapping[str, Any], finish: str | None = None
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish, "logprobs": None}],
    }


def final_chunks(result: RouteResult, trace_id: str) -> list[dict[str, Any]]:
    """The closing chunks: finish_reason, then usage with Sluice's extras (empty choices)."""
    done = chunk(result.request_id, result.model, {}, result.finish.value)
    usage = {
        **chunk(result.request_id, result.model, {}),
        "choices": [],
        "usage": _usage(result),
        "sluice": sluice_extras(result, trace_id),
    }
    return [done, usage]


def error_body(code: grpc.StatusCode, message: str) -> tuple[int, dict[str, Any]]:
    status, kind = _HTTP_STATUS.get(code, (500, "server_error"))
    return status, {
        "error": {"message": message, "type": kind, "param": None, "code": code.name.lower()}
    }

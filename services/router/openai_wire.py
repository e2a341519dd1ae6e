"""The OpenAI chat-completions wire format of the HTTP front door: parsing requests into
admission arguments, and rendering results, stream chunks and errors."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import orjson

from services.router.model import CacheMode, RouteResult
from shared.chat import FormatKind, ResponseFormat, Role, Sampling, Turn
from shared.errors import InvalidRequest, SluiceError, quoted

_ROLES = {role.value: role for role in Role} | {"developer": Role.SYSTEM}
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.NOT_FOUND: (404, "invalid_request_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "insufficient_quota"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout"),
}
# The proto's int32 fields take no more; larger values were a 500 in the conversion.
MAX_INT32 = 2**31 - 1


class FieldError(InvalidRequest):
    """One request field is wrong; `param` names it, as OpenAI's error shape does."""

    def __init__(self, param: str, problem: str) -> None:
        super().__init__(f"{param} {problem}")
        self.param = param


@dataclass(frozen=True)
class ChatCall:
    """An OpenAI request, translated for admission."""

    model_class: str
    turns: tuple[Turn, ...]
    sampling: Sampling
    response_format: ResponseFormat
    stream: bool
    cache_mode: CacheMode | None


def _string(body: Mapping[str, Any], key: str, where: str = "") -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    raise FieldError(where + key, "must be a string")


def _boolean(body: Mapping[str, Any], key: str, where: str = "") -> bool | None:
    value = body.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise FieldError(where + key, "must be true or false")


def _integer(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT32:
        raise FieldError(key, f"must be an integer within [0, {MAX_INT32}]")
    return value


def _number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(key, "must be a number")
    return float(value)


def _content(index: int, raw: Any) -> str:
    """Message content is a string or a list of parts; only text parts are supported."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and all(
        isinstance(p, Mapping) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in raw
    ):
        return "".join(p["text"] for p in raw)
    raise FieldError(f"messages[{index}].content", "must be a string or a list of text parts")


def _turn(index: int, message: Any) -> Turn:
    where = f"messages[{index}]"
    if not isinstance(message, Mapping):
        raise FieldError(where, "must be an object")
    role = message.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise FieldError(
            f"{where}.role", f"{quoted(role)} is not one of {', '.join(sorted(_ROLES))}"
        )
    name = _string(message, "name", f"{where}.") or ""
    return Turn(_ROLES[role], _content(index, message.get("content")), name)


def _turns(raw: Any) -> tuple[Turn, ...]:
    if not isinstance(raw, list) or not raw:
        raise FieldError("messages", "must be a non-empty list")
    return tuple(_turn(index, message) for index, message in enumerate(raw))


def _stop(raw: Any) -> tuple[str, ...]:
    stop = (raw,) if isinstance(raw, str) and raw else raw or ()
    if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop):
        raise FieldError("stop", "must be a string or a list of strings")
    return tuple(stop)


def _sampling(body: Mapping[str, Any]) -> Sampling:
    # max_completion_tokens is the current name; max_tokens the older one.
    newer, older = _integer(body, "max_completion_tokens"), _integer(body, "max_tokens")
    max_tokens = newer if newer is not None else older
    return Sampling(
        _number(body, "temperature"),
        _number(body, "top_p"),
        max_tokens or 0,
        _stop(body.get("stop")),
    )


def _json_schema(raw: Any) -> ResponseFormat:
    if not isinstance(raw, Mapping):
        raise FieldError("response_format.json_schema", "must be an object holding `schema`")
    schema = raw.get("schema")
    if not isinstance(schema, Mapping):
        raise FieldError("response_format.json_schema.schema", "must be an object")
    try:
        text = orjson.dumps(schema).decode()
    except orjson.JSONEncodeError:
        raise FieldError("response_format.json_schema.schema", "is nested too deeply") from None
    return ResponseFormat(FormatKind.JSON_SCHEMA, text)


def _response_format(raw: Any) -> ResponseFormat:
    if raw is None:
        return ResponseFormat()
    if not isinstance(raw, Mapping):
        raise FieldError("response_format", "must be an object")
    kind = raw.get("type")
    if kind == "text":
        return ResponseFormat()
    if kind == "json_object":
        return ResponseFormat(FormatKind.JSON_OBJECT)
    if kind == "json_schema":
        return _json_schema(raw.get("json_schema"))
    raise FieldError("response_format.type", "must be text, json_object or json_schema")


def _cache_mode(body: Mapping[str, Any]) -> CacheMode | None:
    sluice = body.get("sluice")
    if sluice is None:
        return None
    if not isinstance(sluice, Mapping):
        raise FieldError("sluice", "must be an object")
    return CacheMode.BYPASS if _boolean(sluice, "cache", "sluice.") is False else None


def parse_chat_request(body: Any) -> ChatCall:
    """Validates an OpenAI chat-completions body; errors name the field. Fields Sluice does
    not use are ignored, as OpenAI-compatible servers do."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("the request body must be a JSON object")
    model = _string(body, "model") or ""
    # `model` names a Sluice model class; "auto" (or nothing) means the tenant's default class.
    model_class = "" if model == "auto" else model
    return ChatCall(
        model_class=model_class,
        turns=_turns(body.get("messages")),
        sampling=_sampling(body),
        response_format=_response_format(body.get("response_format")),
        stream=bool(_boolean(body, "stream")),
        cache_mode=_cache_mode(body),
    )


def read_chat_call(raw: bytes) -> ChatCall:
    """Parses and validates a request body (proportional to its size: large ones are read
    off the event loop)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"the request body is not valid JSON: {error}") from None
    return parse_chat_request(body)


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


def error_body(
    code: grpc.StatusCode, message: str, param: str | None = None
) -> tuple[int, dict[str, Any]]:
    status, kind = _HTTP_STATUS.get(code, (500, "server_error"))
    return status, {
        "error": {"message": message, "type": kind, "param": param, "code": code.name.lower()}
    }


def error_of(error: SluiceError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and OpenAI error body of a domain error (its field, if it names one)."""
    return error_body(error.code, str(error), getattr(error, "param", None))

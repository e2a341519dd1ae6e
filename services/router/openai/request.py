"""An OpenAI chat-completions request body, validated and read into admission's terms.

Every field is either carried on (ChatCall) or refused with a FieldError naming it
(surface.py); what both front doors must check is left to admission.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from services.router.admission import Asked
from services.router.admission_checks import MAX_END_USER_CHARS, bad
from services.router.model import CacheMode
from services.router.openai.messages import read_turns
from services.router.openai.surface import check_surface
from services.router.openai.tools import read_tools
from services.router.openai.values import (
    MAX_INT64,
    boolean,
    integer,
    mapping,
    number,
    only_keys,
    string,
)
from shared.chat import NO_TOOLS, FormatKind, ResponseFormat, Sampling, ToolSet, Turn
from shared.errors import InvalidRequest


@dataclass(frozen=True)
class ChatCall:
    """An OpenAI request, translated for admission, with what only the wire needs."""

    model_class: str
    turns: tuple[Turn, ...]
    sampling: Sampling
    response_format: ResponseFormat
    stream: bool
    cache_mode: CacheMode | None
    tools: ToolSet = NO_TOOLS
    end_user: str = ""
    metadata: tuple[tuple[str, str], ...] = ()
    # stream_options.include_usage: a last chunk with the usage and empty choices.
    include_usage: bool = False

    def asked(self) -> Asked:
        return Asked(
            model_class=self.model_class,
            turns=self.turns,
            sampling=self.sampling,
            cache_mode=self.cache_mode,
            response_format=self.response_format,
            tools=self.tools,
            end_user=self.end_user,
            metadata=self.metadata,
        )


def _stop(raw: Any) -> tuple[str, ...]:
    stop = (raw,) if isinstance(raw, str) and raw else raw or ()
    if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop):
        raise bad("stop", "must be a string or a list of strings")
    return tuple(stop)


def _sampling(body: Mapping[str, Any]) -> Sampling:
    # max_completion_tokens is the current name; max_tokens the older one.
    newer, older = integer(body, "max_completion_tokens"), integer(body, "max_tokens")
    max_tokens = newer if newer is not None else older
    n = integer(body, "n")
    return Sampling(
        temperature=number(body, "temperature"),
        top_p=number(body, "top_p"),
        max_tokens=max_tokens or 0,
        stop=_stop(body.get("stop")),
        seed=integer(body, "seed", -MAX_INT64 - 1, MAX_INT64),
        n=1 if n is None else n,
        logprobs=bool(boolean(body, "logprobs")),
        top_logprobs=integer(body, "top_logprobs") or 0,
        presence_penalty=number(body, "presence_penalty"),
        frequency_penalty=number(body, "frequency_penalty"),
    )


def _json_schema(raw: Any) -> ResponseFormat:
    where = "response_format.json_schema"
    if not isinstance(raw, Mapping):
        raise bad(where, "must be an object holding `schema`")
    only_keys(raw, frozenset({"name", "schema", "strict", "description"}), where)
    schema = raw.get("schema")
    if not isinstance(schema, Mapping):
        raise bad(f"{where}.schema", "must be an object")
    try:
        text = orjson.dumps(schema).decode()
    except orjson.JSONEncodeError:
        raise bad(f"{where}.schema", "is nested too deeply") from None
    string(raw, "description", f"{where}.")
    return ResponseFormat(
        FormatKind.JSON_SCHEMA,
        text,
        schema_name=string(raw, "name", f"{where}.") or "",
        strict=bool(boolean(raw, "strict", f"{where}.")),
    )


def _response_format(raw: Any) -> ResponseFormat:
    if raw is None:
        return ResponseFormat()
    if not isinstance(raw, Mapping):
        raise bad("response_format", "must be an object")
    kind = raw.get("type")
    if kind == "text":
        return ResponseFormat()
    if kind == "json_object":
        return ResponseFormat(FormatKind.JSON_OBJECT)
    if kind == "json_schema":
        return _json_schema(raw.get("json_schema"))
    raise bad("response_format.type", "must be text, json_object or json_schema")


def _cache_mode(body: Mapping[str, Any]) -> CacheMode | None:
    sluice = mapping(body, "sluice")
    if sluice is None:
        return None
    return CacheMode.BYPASS if boolean(sluice, "cache", "sluice.") is False else None


def _include_usage(body: Mapping[str, Any], stream: bool) -> bool:
    options = mapping(body, "stream_options")
    if options is None:
        return False
    if not stream:
        raise bad("stream_options", "is only allowed with stream: true")
    only_keys(options, frozenset({"include_usage", "include_obfuscation"}), "stream_options")
    if boolean(options, "include_obfuscation", "stream_options."):
        raise bad("stream_options.include_obfuscation", "true is not supported by this gateway")
    return bool(boolean(options, "include_usage", "stream_options."))


def _end_user(body: Mapping[str, Any]) -> str:
    """`user`, or `safety_identifier`, which OpenAI introduced to replace it; both name the
    caller's end user to the provider, so two different ones cannot both be kept."""
    user, safety = string(body, "user"), string(body, "safety_identifier")
    if user and safety and user != safety:
        raise bad("safety_identifier", "and user name different end users; send one of them")
    if safety and not user and len(safety) > MAX_END_USER_CHARS:
        # Checked here, not left to admission's `user` check, so the error names the field sent.
        raise bad(
            "safety_identifier", f"has {len(safety)} characters; at most {MAX_END_USER_CHARS}"
        )
    return safety or user or ""


def _metadata(body: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    raw = mapping(body, "metadata") or {}
    if not all(isinstance(value, str) for value in raw.values()):
        raise bad("metadata", "values must be strings")
    return tuple(sorted(raw.items()))


def parse_chat_request(body: Any) -> ChatCall:
    """Validates an OpenAI chat-completions body; errors name the field."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("the request body must be a JSON object")
    check_surface(body)
    model = string(body, "model") or ""
    stream = bool(boolean(body, "stream"))
    return ChatCall(
        # `model` names a Sluice model class; "auto" (or nothing) means the tenant's default.
        model_class="" if model == "auto" else model,
        turns=read_turns(body.get("messages")),
        sampling=_sampling(body),
        response_format=_response_format(body.get("response_format")),
        stream=stream,
        cache_mode=_cache_mode(body),
        tools=read_tools(body),
        end_user=_end_user(body),
        metadata=_metadata(body),
        include_usage=_include_usage(body, stream),
    )


def read_chat_call(raw: bytes) -> ChatCall:
    """Parses and validates a request body (proportional to its size: large ones are read
    off the event loop)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"the request body is not valid JSON: {error}") from None
    return parse_chat_request(body)

"""An Anthropic Messages request body, validated and read into admission's terms.

Every field is carried on (MessagesCall) or refused with a FieldError naming it. `top_k` is
carried, and admission refuses it (naming `top_k` and the model) for a model class with a tier
whose API takes none (OpenAI's chat completions; the catalogue's `top_k: true` marks the others,
the Claude models). The `anthropic-version` header is
checked here too: a version this door does not speak is refused rather than guessed at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from services.router.admission import Asked
from services.router.admission_checks import bad
from services.router.anthropic.blocks import Read, read_conversation
from services.router.model import CacheMode
from services.router.openai.values import (
    array,
    boolean,
    integer,
    mapping,
    only_keys,
    string,
)
from shared.chat import Sampling, ToolChoiceMode, ToolFunction, ToolSet
from shared.errors import InvalidRequest, quoted

# The Messages API's published versions, and the one the pinned `anthropic` SDK sends.
VERSIONS = frozenset({"2023-01-01", "2023-06-01", "2026-10-21"})
HONOURED = frozenset(
    {
        "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
        "temperature", "top_p", "top_k", "tools", "tool_choice", "service_tier", "sluice",
    }
)  # fmt: skip
_NOT_HERE = "is not supported by this gateway"
REFUSED = {
    "thinking": f"{_NOT_HERE}: its tiers are not all models that think",
    "container": f"{_NOT_HERE}: it runs no code-execution containers",
    "mcp_servers": f"{_NOT_HERE}: it connects to no MCP servers",
    "context_management": f"{_NOT_HERE}: it keeps the conversation as sent",
    "output_format": f"{_NOT_HERE}: use the OpenAI door's response_format",
}
# service_tier values that ask for nothing beyond what the gateway does anyway.
_SERVICE_TIERS = ("auto", "standard_only")
_TOOL_FIELDS = frozenset({"type", "name", "description", "input_schema", "cache_control"})
_CHOICES = {
    "auto": ToolChoiceMode.AUTO,
    "any": ToolChoiceMode.REQUIRED,
    "tool": ToolChoiceMode.FUNCTION,
    "none": ToolChoiceMode.NONE,
}


@dataclass(frozen=True)
class MessagesCall:
    """A Messages request, translated for admission, with what only the wire needs."""

    asked: Asked
    stream: bool
    # Where each turn came from (blocks.Read), to name admission's findings in this API's terms.
    paths: tuple[str, ...]
    part_blocks: tuple[tuple[int, ...], ...]


def check_version(version: str | None) -> None:
    if not version:
        raise bad("anthropic-version", "header is required")
    if version not in VERSIONS:
        known = ", ".join(sorted(VERSIONS))
        raise bad("anthropic-version", f"{quoted(version)} is not a version it speaks ({known})")


def _check_surface(body: Mapping[str, Any]) -> None:
    for key, value in body.items():
        if key in REFUSED:
            if value is not None:
                raise bad(key, REFUSED[key])
        elif key not in HONOURED:
            raise bad(key[:64], "is not a Messages API parameter; unknown fields are refused")
    tier = body.get("service_tier")
    if tier is not None and tier not in _SERVICE_TIERS:
        raise bad("service_tier", f"{quoted(tier)} {_NOT_HERE}; only auto or standard_only")


def _unit_number(body: Mapping[str, Any], key: str) -> float | None:
    """temperature and top_p: Anthropic's range for both is [0, 1]."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad(key, "must be a number")
    if not 0 <= value <= 1:
        raise bad(key, f"is {value}; it must be within [0, 1]")
    return float(value)


def _sampling(body: Mapping[str, Any]) -> Sampling:
    if body.get("max_tokens") is None:
        raise bad("max_tokens", "is required")
    max_tokens = integer(body, "max_tokens", 1)
    stop = array(body, "stop_sequences") or []
    if not all(isinstance(s, str) and s for s in stop):
        raise bad("stop_sequences", "must be a list of non-empty strings")
    return Sampling(
        temperature=_unit_number(body, "temperature"),
        top_p=_unit_number(body, "top_p"),
        max_tokens=max_tokens or 0,
        stop=tuple(stop),
        top_k=integer(body, "top_k", 1),
    )


def _schema_text(where: str, schema: Any) -> str:
    if not isinstance(schema, Mapping):
        raise bad(where, "is required: a JSON Schema object")
    try:
        return orjson.dumps(schema).decode()
    except orjson.JSONEncodeError:
        raise bad(where, "is nested too deeply") from None


def _tool(index: int, tool: Any) -> ToolFunction:
    where = f"tools[{index}]"
    if not isinstance(tool, Mapping):
        raise bad(where, "must be an object")
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise bad(f"{where}.type", f"{quoted(kind)} {_NOT_HERE}; its tiers run client tools only")
    only_keys(tool, _TOOL_FIELDS, where)
    return ToolFunction(
        name=string(tool, "name", f"{where}.") or "",
        description=string(tool, "description", f"{where}.") or "",
        parameters_json=_schema_text(f"{where}.input_schema", tool.get("input_schema")),
    )


def _tools(body: Mapping[str, Any]) -> ToolSet:
    functions = tuple(_tool(i, tool) for i, tool in enumerate(array(body, "tools") or ()))
    raw = mapping(body, "tool_choice")
    if raw is None:
        return ToolSet(functions)
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in _CHOICES:
        raise bad("tool_choice.type", f"{quoted(kind)} is not auto, any, tool or none")
    fields = {"type", "disable_parallel_tool_use"} | ({"name"} if kind == "tool" else set())
    only_keys(raw, frozenset(fields), "tool_choice")
    name = string(raw, "name", "tool_choice.") or ""
    if kind == "tool" and not name:
        raise bad("tool_choice.name", "is required with type tool")
    single = boolean(raw, "disable_parallel_tool_use", "tool_choice.")
    return ToolSet(functions, _CHOICES[kind], name, None if single is None else not single)


def _end_user(body: Mapping[str, Any]) -> str:
    metadata = mapping(body, "metadata")
    if metadata is None:
        return ""
    only_keys(metadata, frozenset({"user_id"}), "metadata")
    return string(metadata, "user_id", "metadata.") or ""


def _cache_mode(body: Mapping[str, Any]) -> CacheMode | None:
    sluice = mapping(body, "sluice")
    if sluice is None:
        return None
    only_keys(sluice, frozenset({"cache"}), "sluice")
    return CacheMode.BYPASS if boolean(sluice, "cache", "sluice.") is False else None


def parse_messages_request(body: Any) -> MessagesCall:
    """Validates a Messages body; errors name the field."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("the request body must be a JSON object")
    _check_surface(body)
    model = string(body, "model")
    if not model:
        raise bad("model", "is required: a model class, or auto for the default")
    read: Read = read_conversation(body.get("system"), body.get("messages"))
    asked = Asked(
        # `model` names a Sluice model class; "auto" means the tenant's default.
        model_class="" if model == "auto" else model,
        turns=tuple(read.turns),
        sampling=_sampling(body),
        cache_mode=_cache_mode(body),
        tools=_tools(body),
        end_user=_end_user(body),
    )
    return MessagesCall(
        asked, bool(boolean(body, "stream")), tuple(read.paths), tuple(read.part_blocks)
    )


def read_messages_call(raw: bytes) -> MessagesCall:
    """Parses and validates a request body (large ones are read off the event loop)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"the request body is not valid JSON: {error}") from None
    return parse_messages_request(body)

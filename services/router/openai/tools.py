"""`tools`, `tool_choice` and `parallel_tool_calls`, read into a ToolSet. Function tools only;
names, schemas and a tool_choice naming an offered tool are checked by admission, for both
doors (admission_checks.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from services.router.admission_checks import bad
from services.router.openai.values import array, boolean, mapping, only_keys, string
from shared.chat import ToolChoiceMode, ToolFunction, ToolSet
from shared.errors import quoted

_FUNCTION_FIELDS = frozenset({"name", "description", "parameters", "strict"})
_MODES = {
    mode.value: mode for mode in (ToolChoiceMode.NONE, ToolChoiceMode.AUTO, ToolChoiceMode.REQUIRED)
}


def _schema_text(where: str, schema: Any) -> str:
    if not isinstance(schema, Mapping):
        raise bad(where, f"must be a JSON Schema object, not {type(schema).__name__}")
    try:
        return orjson.dumps(schema).decode()
    except orjson.JSONEncodeError:
        raise bad(where, "is nested too deeply") from None


def _function(index: int, tool: Any) -> ToolFunction:
    where = f"tools[{index}]"
    if not isinstance(tool, Mapping):
        raise bad(where, "must be an object")
    if tool.get("type") != "function":
        raise bad(
            f"{where}.type",
            f"{quoted(tool.get('type'))} is not supported by this gateway; use function tools",
        )
    only_keys(tool, frozenset({"type", "function"}), where)
    function = mapping(tool, "function", f"{where}.")
    if function is None:
        raise bad(f"{where}.function", "is required")
    only_keys(function, _FUNCTION_FIELDS, f"{where}.function")
    at = f"{where}.function."
    parameters = function.get("parameters")
    return ToolFunction(
        name=string(function, "name", at) or "",
        description=string(function, "description", at) or "",
        parameters_json="" if parameters is None else _schema_text(f"{at}parameters", parameters),
        strict=bool(boolean(function, "strict", at)),
    )


def _choice(raw: Any) -> tuple[ToolChoiceMode, str]:
    if raw is None:
        return ToolChoiceMode.AUTO, ""
    if isinstance(raw, str) and raw in _MODES:
        return _MODES[raw], ""
    if isinstance(raw, Mapping) and raw.get("type") == "function":
        only_keys(raw, frozenset({"type", "function"}), "tool_choice")
        function = mapping(raw, "function", "tool_choice.")
        name = string(function or {}, "name", "tool_choice.function.")
        if not name:
            raise bad("tool_choice.function.name", "is required")
        return ToolChoiceMode.FUNCTION, name
    if isinstance(raw, Mapping) and raw.get("type") in ("allowed_tools", "custom"):
        raise bad("tool_choice", f"of type {raw['type']!r} is not supported by this gateway")
    raise bad(
        "tool_choice",
        'must be "none", "auto", "required" or {"type": "function", "function": {"name"}}',
    )


def read_tools(body: Mapping[str, Any]) -> ToolSet:
    functions = tuple(_function(i, tool) for i, tool in enumerate(array(body, "tools") or ()))
    choice, name = _choice(body.get("tool_choice"))
    return ToolSet(functions, choice, name, boolean(body, "parallel_tool_calls"))

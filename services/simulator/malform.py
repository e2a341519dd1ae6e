"""Broken structured output on purpose: what a weak model gets wrong in tool calls and JSON.

A malformation is forced by a scenario rule (`malform:`, e.g. `[sim:bad-tool-args]` for the
cheapest model) or drawn at the model's `malformed_rate`. The draw hashes (model, prompt,
variant), so the same request is malformed, or not, every time. Whatever is asked, the result
is checked to really be wrong: when a schema leaves no room for the chosen mistake (no required
field to drop, a type that accepts anything), the output is cut mid-JSON instead, which is
never valid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import jsonschema
import orjson

from services.simulator.json_gen import wrong_value
from services.simulator.scenario import JSON_MALFORMATIONS, TOOL_MALFORMATIONS, ModelSpec


def _unit(*parts: str) -> float:
    """A number in [0, 1) fixed by the parts."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def drawn_malformation(model: ModelSpec, prompt: str, variant: str, tool_turn: bool) -> str | None:
    """A malformation at the model's rate, or None; deterministic per (model, prompt, variant)."""
    if model.malformed_rate <= 0 or _unit("malformed", model.name, prompt, variant) >= (
        model.malformed_rate
    ):
        return None
    kinds = TOOL_MALFORMATIONS if tool_turn else JSON_MALFORMATIONS
    return kinds[int(_unit("kind", model.name, prompt, variant) * len(kinds))]


def cut_json(text: str) -> str:
    """A proper prefix of a JSON object or array, which is never valid JSON."""
    return text[: len(text) // 2] or "{"


def _violates(schema: Mapping[str, Any] | None, document: Any) -> bool:
    if schema is None:
        return not isinstance(document, dict)
    try:
        return not jsonschema.validators.validator_for(schema)(schema).is_valid(document)
    except (jsonschema.exceptions.SchemaError, RecursionError, LookupError, ValueError):
        return False


def broken_document(kind: str, schema: Mapping[str, Any] | None, document: Any) -> str:
    """JSON text for document, made wrong in the way kind names.

    `tool_missing_field` drops the first required field; `tool_wrong_type` and `json_schema`
    give a field a value of the wrong type or outside its enum (for a schema-less JSON object:
    an array instead of the object); `tool_json` and `json_syntax` cut the text mid-way.
    """
    good = orjson.dumps(document).decode()
    if kind in ("tool_json", "json_syntax"):
        return cut_json(good)
    broken = _without_required(schema, document) if kind == "tool_missing_field" else None
    if broken is None:
        broken = _with_wrong_type(schema, document)
    if broken is not None and _violates(schema, broken):
        return orjson.dumps(broken).decode()
    return cut_json(good)


def _without_required(schema: Mapping[str, Any] | None, document: Any) -> Any:
    required = schema.get("required") if schema is not None else None
    if not isinstance(document, dict) or not isinstance(required, list) or not required:
        return None
    return {k: v for k, v in document.items() if k != required[0]}


def _with_wrong_type(schema: Mapping[str, Any] | None, document: Any) -> Any:
    if schema is None:
        return [document]
    properties = schema.get("properties")
    if not isinstance(document, dict) or not isinstance(properties, Mapping) or not document:
        return None
    name = next((n for n in properties if n in document), None)
    if name is None:
        return None
    return {**document, name: wrong_value(properties[name], schema)}


def unknown_name(name: str, taken: set[str]) -> str:
    """A function name close to name that no given tool has."""
    attempt = 2
    while f"{name[:56]}_v{attempt}" in taken:
        attempt += 1
    return f"{name[:56]}_v{attempt}"

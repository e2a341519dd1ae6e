"""Deterministic JSON values from a JSON schema, and ways to break them on purpose.

The generator covers what structured-output and tool schemas use in practice: objects with
`properties`/`required` (`additionalProperties: false` is respected, as no extra key is ever
added), strings (`enum`, `const`, `minLength`/`maxLength`, common `format`s), integers and
numbers (`minimum`/`maximum`, exclusive bounds), booleans, arrays (`items`, `minItems`/
`maxItems`), `null`, type lists (the first non-null type, so a nullable field gets a value),
`anyOf`/`oneOf` (the first branch), `allOf` (the branches merged) and local `$ref`s into
`$defs`/`definitions`. `pattern` is not honoured. Below a nesting depth it writes only required
properties and the fewest array items, so a recursive schema ends.

String values are words of the prompt, so a call such as `get_weather` on "weather in Paris"
reads `{"city": "Paris"}`; the rest is drawn from a seeded RNG, so a (model, prompt, seed)
always gets the same value.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_MARKER = re.compile(r"\[sim:[^\]]*\]")
_FILLER = ("example", "value", "sample", "default", "answer")
_FORMATS = {
    "date": "2024-05-17",
    "date-time": "2024-05-17T09:30:00Z",
    "time": "09:30:00",
    "email": "user@example.com",
    "uri": "https://example.com/item",
    "uuid": "3f1c2a9e-5b7d-4e8f-9a1b-2c3d4e5f6a7b",
}
_SHALLOW_DEPTH = 4


def prompt_words(prompt: str) -> list[str]:
    """The prompt's words: names (capitalised mid-sentence, such as places) first, then the
    others of four letters or more."""
    text = _MARKER.sub(" ", prompt)
    names: list[str] = []
    others: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group()
        before = text[: match.start()].rstrip()
        mid_sentence = bool(before) and before[-1] not in ".!?:\n"
        if word[0].isupper() and mid_sentence:
            names.append(word)
        elif len(word) > 3:
            others.append(word.lower())
    return list(dict.fromkeys(names + others))


class JsonGenerator:
    """Writes one value for a schema; `root` resolves `$ref`s."""

    def __init__(self, root: Mapping[str, Any], rng: random.Random, words: Sequence[str]) -> None:
        self._root = root
        self._rng = rng
        self._words = list(words) or list(_FILLER)
        self._next_word = 0

    def value(self, schema: Any, depth: int = 0) -> Any:
        if not isinstance(schema, Mapping):
            return self._string({})
        schema = self._resolved(schema, depth)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return self.value(schema[key][0], depth + 1)
        kind = _kind(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind in ("integer", "number"):
            return self._number(schema, kind)
        if kind == "boolean":
            return self._rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(schema)

    def _resolved(self, schema: Mapping[str, Any], depth: int) -> Mapping[str, Any]:
        ref = schema.get("$ref")
        if isinstance(ref, str) and depth < 32:
            target = resolve_ref(self._root, ref)
            if target is not None:
                return self._resolved(target, depth + 1)
        branches = schema.get("allOf")
        if isinstance(branches, list) and branches:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for branch in branches:
                if isinstance(branch, Mapping):
                    part = self._resolved(branch, depth + 1)
                    merged["properties"] = {
                        **merged.get("properties", {}),
                        **part.get("properties", {}),
                    }
                    merged["required"] = [*merged.get("required", []), *part.get("required", [])]
                    merged.update({k: v for k, v in part.items() if k not in merged})
            return merged
        return schema

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = schema.get("required")
        required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        shallow = depth >= _SHALLOW_DEPTH
        names = [n for n in properties if not shallow or n in required]
        names += [n for n in required if n not in names]
        return {name: self.value(properties.get(name, {}), depth + 1) for name in names}

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        low = _int_or(schema.get("minItems"), 0)
        high = _int_or(schema.get("maxItems"), max(low, 3))
        count = low if depth >= _SHALLOW_DEPTH else min(max(low, self._rng.randint(1, 3)), high)
        items = schema.get("items", {})
        return [self.value(items, depth + 1) for _ in range(count)]

    def _number(self, schema: Mapping[str, Any], kind: str) -> int | float:
        low = _num_or(schema.get("minimum"), None)
        high = _num_or(schema.get("maximum"), None)
        exclusive_low = _num_or(schema.get("exclusiveMinimum"), None)
        exclusive_high = _num_or(schema.get("exclusiveMaximum"), None)
        step = 1 if kind == "integer" else 0.5
        if exclusive_low is not None:
            low = max(low if low is not None else exclusive_low + step, exclusive_low + step)
        if exclusive_high is not None:
            high = min(high if high is not None else exclusive_high - step, exclusive_high - step)
        low = low if low is not None else (high - 100 if high is not None else 0)
        high = high if high is not None else low + 100
        if kind == "integer":
            first, last = int(-(-low // 1)), int(high // 1)
            return self._rng.randint(first, last) if first <= last else int(low)
        return round(self._rng.uniform(low, high), 2) if low <= high else low

    def _string(self, schema: Mapping[str, Any]) -> str:
        fixed = _FORMATS.get(str(schema.get("format", "")))
        if fixed is not None:
            return fixed
        text = self._words[self._next_word % len(self._words)]
        self._next_word += 1
        low = _int_or(schema.get("minLength"), 0)
        high = _int_or(schema.get("maxLength"), max(low, len(text)))
        while len(text) < low:
            text = f"{text} {self._rng.choice(_FILLER)}"
        return text[: max(high, low)]


def _kind(schema: Mapping[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        non_null = [t for t in declared if t != "null"]
        declared = non_null[0] if non_null else "null"
    if isinstance(declared, str):
        return declared
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _int_or(raw: Any, default: int) -> int:
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0 else default


def _num_or(raw: Any, default: float | None) -> float | None:
    return raw if isinstance(raw, int | float) and not isinstance(raw, bool) else default


def resolve_ref(root: Mapping[str, Any], ref: str) -> Mapping[str, Any] | None:
    """A local `#/...` reference inside root; None for anything else."""
    if not ref.startswith("#"):
        return None
    node: Any = root
    for part in [p for p in ref[1:].split("/") if p]:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part.replace("~1", "/").replace("~0", "~"))
    return node if isinstance(node, Mapping) else None


def generate(schema: Mapping[str, Any] | None, seed: int, prompt: str) -> Any:
    """A value that fits schema, the same for the same (schema, seed, prompt)."""
    root = schema if schema is not None else {"type": "object"}
    return JsonGenerator(root, random.Random(seed), prompt_words(prompt)).value(root)


def wrong_value(schema: Any, root: Mapping[str, Any]) -> Any:
    """A value of the wrong type for schema (or outside its enum)."""
    if isinstance(schema, Mapping):
        ref = schema.get("$ref")
        target = resolve_ref(root, ref) if isinstance(ref, str) else None
        schema = target if target is not None else schema
    if not isinstance(schema, Mapping):
        return 12345
    if schema.get("enum") or "const" in schema:
        return "__not_one_of_the_allowed_values__"
    return "not a number" if _kind(schema) in ("integer", "number", "boolean") else 12345

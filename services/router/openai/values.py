"""Typed reads of one JSON value of a request body; a wrong type is a FieldError naming it.
`null` reads as "not given", as OpenAI treats its optional fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.router.admission_checks import bad

# The proto's int32 fields take no more; larger values were a 500 in the conversion.
MAX_INT32 = 2**31 - 1
# `seed` is an int64 on the wire to the provider.
MAX_INT64 = 2**63 - 1


def string(body: Mapping[str, Any], key: str, where: str = "") -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    raise bad(where + key, "must be a string")


def boolean(body: Mapping[str, Any], key: str, where: str = "") -> bool | None:
    value = body.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise bad(where + key, "must be true or false")


def integer(
    body: Mapping[str, Any], key: str, low: int = 0, high: int = MAX_INT32, where: str = ""
) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad(where + key, f"must be an integer within [{low}, {high}]")
    return value


def number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(key, "must be a number")
    return float(value)


def mapping(body: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any] | None:
    value = body.get(key)
    if value is None or isinstance(value, Mapping):
        return value
    raise bad(where + key, "must be an object")


def array(body: Mapping[str, Any], key: str, where: str = "") -> list[Any] | None:
    value = body.get(key)
    if value is None or isinstance(value, list):
        return value
    raise bad(where + key, "must be an array")


def only_keys(raw: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    """Refuses a key Sluice does not know inside an object, as OpenAI refuses unknown fields."""
    for key in raw:
        if key not in allowed:
            raise bad(
                f"{where}.{key[:64]}", "is not a known field here; unknown fields are refused"
            )

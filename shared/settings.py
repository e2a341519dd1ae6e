"""Typed settings from `SLUICE_*` environment variables, validated at start-up.

Every reader raises SettingsError naming the variable, so a misconfigured process stops with a
message that says exactly what to fix (rule 9 of STYLE.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


class ConfigError(ValueError):
    """Configuration (env or a policy/catalogue/endpoints file) is invalid; fatal at start-up."""


class SettingsError(ConfigError):
    """A setting is missing or malformed; the message names the variable."""


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value.strip() if value is not None and value.strip() != "" else None


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    """Returns the variable's value, or default when unset or empty."""
    value = _raw(env, name)
    return default if value is None else value


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int | None = None) -> int:
    """Parses an integer, rejecting values below minimum."""
    value = _raw(env, name)
    if value is None:
        return default
    try:
        parsed = int(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not an integer") from None
    if minimum is not None and parsed < minimum:
        raise SettingsError(f"{name}={parsed} must be at least {minimum}")
    return parsed


def env_float(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """Parses a float within [minimum, maximum]."""
    value = _raw(env, name)
    if value is None:
        return default
    try:
        parsed = float(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a number") from None
    if (minimum is not None and parsed < minimum) or (maximum is not None and parsed > maximum):
        raise SettingsError(f"{name}={parsed} must be within [{minimum}, {maximum}]")
    return parsed


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """Parses true/false, 1/0, yes/no."""
    value = _raw(env, name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name}={value!r} is not a boolean (use true or false)")


def env_address(env: Mapping[str, str], name: str, default: str) -> str:
    """Parses a host:port address; port 0 asks the OS for a free port."""
    value = env_str(env, name, default)
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(f"{name}={value!r} is not a host:port address")
    return value


def env_path(env: Mapping[str, str], name: str, default: Path, *, must_exist: bool) -> Path:
    """Parses a filesystem path, optionally requiring that it exists."""
    value = _raw(env, name)
    path = Path(value) if value is not None else default
    if must_exist and not path.exists():
        raise SettingsError(f"{name}={str(path)!r} does not exist")
    return path


def environ() -> Mapping[str, str]:
    """The process environment, for Settings.from_env() callers."""
    return os.environ

"""Upstream endpoints as data: parsed from YAML, validated at start-up."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shared.settings import ConfigError

_ENV_REFERENCE = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


class EndpointConfigError(ConfigError):
    """The endpoints file is malformed; the message names the entry and field."""


@dataclass(frozen=True)
class Endpoint:
    """One OpenAI-compatible base URL in one region."""

    name: str
    provider: str
    region: str
    base_url: str
    api_key_env: str
    models: frozenset[str]

    def api_key(self, env: Mapping[str, str]) -> str:
        return env.get(self.api_key_env, "") if self.api_key_env else ""

    @property
    def chat_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/chat/completions"


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """Expands ${VAR} and ${VAR:-default} references."""

    def substitute(match: re.Match[str]) -> str:
        value = env.get(match.group(1))
        if value:
            return value
        if match.group(2) is not None:
            return match.group(2)
        raise EndpointConfigError(f"environment variable {match.group(1)} is not set")

    return _ENV_REFERENCE.sub(substitute, text)


def _parse_endpoint(index: int, raw: Any) -> Endpoint:
    where = f"endpoints[{index}]"
    if not isinstance(raw, Mapping):
        raise EndpointConfigError(f"{where} must be a mapping")
    for field in ("name", "region", "base_url", "models"):
        if not raw.get(field):
            raise EndpointConfigError(f"{where} is missing '{field}'")
    base_url = str(raw["base_url"])
    if not base_url.startswith(("http://", "https://")):
        raise EndpointConfigError(f"{where}.base_url {base_url!r} is not an http(s) URL")
    models = raw["models"]
    if not isinstance(models, Sequence) or isinstance(models, str):
        raise EndpointConfigError(f"{where}.models must be a list of model names")
    return Endpoint(
        name=str(raw["name"]),
        provider=str(raw.get("provider", "openai-compatible")),
        region=str(raw["region"]),
        base_url=base_url,
        api_key_env=str(raw.get("api_key_env", "")),
        models=frozenset(str(m) for m in models),
    )


def parse_endpoints(text: str, env: Mapping[str, str]) -> tuple[Endpoint, ...]:
    """Parses the endpoints document after expanding environment references."""
    document = yaml.safe_load(expand_env(text, env))
    if not isinstance(document, Mapping) or not isinstance(document.get("endpoints"), list):
        raise EndpointConfigError("the endpoints file needs an 'endpoints' list")
    endpoints = tuple(_parse_endpoint(i, raw) for i, raw in enumerate(document["endpoints"]))
    names = [e.name for e in endpoints]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise EndpointConfigError(f"duplicate endpoint names: {', '.join(duplicates)}")
    if not endpoints:
        raise EndpointConfigError("the endpoints file lists no endpoints")
    return endpoints


def load_endpoints(path: Path, env: Mapping[str, str] = os.environ) -> tuple[Endpoint, ...]:
    try:
        text = path.read_text()
    except OSError as error:
        raise EndpointConfigError(f"cannot read endpoints file {path}: {error}") from error
    return parse_endpoints(text, env)

"""Upstream endpoints as data: parsed from YAML, validated at start-up.

An endpoint is one base URL in one region: which API it speaks (`provider: anthropic` is the
Messages API; any other provider name is OpenAI's chat completions), which models it serves, the
variable that holds its key (never the key itself), optional per-model price overrides (a
self-hosted server costs nothing; a reseller charges its own rates) and optional limits on
concurrent calls and requests per minute (llama.cpp's server answers one request at a time).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shared.pricing import CatalogueError, ModelPrice, parse_catalogue
from shared.settings import ConfigError

_ENV_REFERENCE = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")
_FIELDS = frozenset(
    {
        "name",
        "provider",
        "region",
        "base_url",
        "api_key_env",
        "models",
        "prices",
        "max_concurrency",
        "rpm",
    }
)


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
    # Per-model prices that replace the catalogue's for calls to this endpoint.
    prices: Mapping[str, ModelPrice] = field(default_factory=dict, hash=False)
    # Calls in flight at once; 0 means no limit.
    max_concurrency: int = 0
    # Requests started in any 60-second window; 0 means no limit.
    rpm: int = 0

    def api_key(self, env: Mapping[str, str]) -> str:
        return env.get(self.api_key_env, "") if self.api_key_env else ""

    @property
    def chat_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/chat/completions"

    @property
    def messages_url(self) -> str:
        """Where a `provider: anthropic` endpoint takes Messages API calls."""
        return f"{self.base_url.rstrip('/')}/messages"

    def __repr__(self) -> str:
        # Never the key: only the variable's name, which is safe to log.
        return f"Endpoint({self.name!r}, region={self.region!r}, base_url={self.base_url!r})"


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


def _limit(where: str, raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EndpointConfigError(f"{where}.{key}={value!r} must be a whole number >= 0")
    return value


def _prices(where: str, raw: Any, models: frozenset[str]) -> Mapping[str, ModelPrice]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise EndpointConfigError(f"{where}.prices must map model names to prices")
    unserved = sorted(str(m) for m in raw if m not in models)
    if unserved:
        raise EndpointConfigError(f"{where}.prices names models it does not serve: {unserved}")
    try:
        # The catalogue's own parser, so an override is validated exactly like the catalogue.
        return dict(parse_catalogue({"models": raw}).prices)
    except CatalogueError as error:
        raise EndpointConfigError(f"{where}.prices: {error}") from None


def _parse_endpoint(index: int, raw: Any) -> Endpoint:
    where = f"endpoints[{index}]"
    if not isinstance(raw, Mapping):
        raise EndpointConfigError(f"{where} must be a mapping")
    unknown = sorted(str(key) for key in raw if key not in _FIELDS)
    if unknown:
        raise EndpointConfigError(f"{where} has unknown field(s): {', '.join(unknown)}")
    for key in ("name", "region", "base_url", "models"):
        if not raw.get(key):
            raise EndpointConfigError(f"{where} is missing '{key}'")
    base_url = str(raw["base_url"])
    if not base_url.startswith(("http://", "https://")):
        raise EndpointConfigError(f"{where}.base_url {base_url!r} is not an http(s) URL")
    models = raw["models"]
    if not isinstance(models, Sequence) or isinstance(models, str):
        raise EndpointConfigError(f"{where}.models must be a list of model names")
    served = frozenset(str(m) for m in models)
    return Endpoint(
        name=str(raw["name"]),
        provider=str(raw.get("provider", "openai-compatible")),
        region=str(raw["region"]),
        base_url=base_url,
        api_key_env=str(raw.get("api_key_env", "")),
        models=served,
        prices=_prices(where, raw.get("prices"), served),
        max_concurrency=_limit(where, raw, "max_concurrency"),
        rpm=_limit(where, raw, "rpm"),
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

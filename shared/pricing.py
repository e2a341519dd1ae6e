"""The price catalogue and cost math. Money is integer nano-USD (1e-9 USD) throughout.

Prices are parsed as Decimal and held as nano-USD per million tokens, so costs are exact integer
arithmetic: a cheap-tier call worth a fraction of a micro-dollar keeps its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from shared.settings import ConfigError

DEFAULT_CATALOGUE = Path(__file__).resolve().parent / "catalogue" / "prices.yaml"
_NANO_PER_USD = Decimal(1_000_000_000)
_TOKENS_PER_PRICE_UNIT = 1_000_000


class CatalogueError(ConfigError):
    """The catalogue file is malformed; the message names the model and field."""


class UnknownModel(KeyError):
    """A model is not in the catalogue."""


@dataclass(frozen=True)
class TokenUsage:
    """Tokens billed for one call."""

    input_tokens: int = 0
    output_tokens: int = 0
    # Of input_tokens: read from the provider's prompt cache, and written to it (Anthropic
    # bills a cache write above the plain input price).
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0


@dataclass(frozen=True)
class ModelPrice:
    """Prices of one model in nano-USD per million tokens."""

    input_nano_per_mtok: int
    output_nano_per_mtok: int
    cached_input_nano_per_mtok: int
    batch_discount: Decimal = Decimal(0)
    # None: a cache write costs what plain input does (OpenAI-style automatic caching).
    cache_write_input_nano_per_mtok: int | None = None

    def cost_nano_usd(self, usage: TokenUsage, *, batch: bool = False) -> int:
        """Cost of a call with this usage, rounded half-up to whole nano-USD."""
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        written = min(usage.cache_write_input_tokens, usage.input_tokens - cached)
        write_price = self.cache_write_input_nano_per_mtok
        scaled = (
            (usage.input_tokens - cached - written) * self.input_nano_per_mtok
            + cached * self.cached_input_nano_per_mtok
            + written * (self.input_nano_per_mtok if write_price is None else write_price)
            + usage.output_tokens * self.output_nano_per_mtok
        )
        if batch:
            scaled = int(Decimal(scaled) * (1 - self.batch_discount))
        return (scaled + _TOKENS_PER_PRICE_UNIT // 2) // _TOKENS_PER_PRICE_UNIT


@dataclass(frozen=True)
class PriceCatalogue:
    """Model prices, with optional per-region overrides."""

    version: str
    prices: Mapping[str, ModelPrice]
    regional: Mapping[tuple[str, str], ModelPrice]
    # Models whose API takes image content parts (`images: true`); admission refuses an image
    # for a request that may reach any other.
    image_models: frozenset[str] = frozenset()
    # Models whose API takes Anthropic's `top_k` (`top_k: true`); admission refuses top_k for
    # a request that may reach any other, as OpenAI's chat completions have no such field.
    top_k_models: frozenset[str] = frozenset()

    def price(self, model: str, region: str = "") -> ModelPrice:
        if (model, region) in self.regional:
            return self.regional[(model, region)]
        try:
            return self.prices[model]
        except KeyError:
            raise UnknownModel(model) from None

    def knows(self, model: str) -> bool:
        return model in self.prices

    def accepts_images(self, model: str) -> bool:
        return model in self.image_models

    def accepts_top_k(self, model: str) -> bool:
        return model in self.top_k_models

    def cost_nano_usd(self, model: str, usage: TokenUsage, region: str = "") -> int:
        return self.price(model, region).cost_nano_usd(usage)


def _usd_to_nano(model: str, field: str, value: Any) -> int:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise CatalogueError(f"model {model!r}: {field}={value!r} is not a number") from None
    if amount < 0:
        raise CatalogueError(f"model {model!r}: {field} must not be negative")
    return int(amount * _NANO_PER_USD)


def _parse_price(model: str, spec: Mapping[str, Any], base: ModelPrice | None) -> ModelPrice:
    if base is None and ("input" not in spec or "output" not in spec):
        raise CatalogueError(f"model {model!r}: needs both 'input' and 'output' prices")
    input_price = (
        _usd_to_nano(model, "input", spec["input"]) if "input" in spec else base.input_nano_per_mtok  # type: ignore[union-attr]
    )
    output_price = (
        _usd_to_nano(model, "output", spec["output"])
        if "output" in spec
        else base.output_nano_per_mtok  # type: ignore[union-attr]
    )
    cached = (
        _usd_to_nano(model, "cached_input", spec["cached_input"])
        if "cached_input" in spec
        else input_price
    )
    written = (
        _usd_to_nano(model, "cache_write_input", spec["cache_write_input"])
        if "cache_write_input" in spec
        else (base.cache_write_input_nano_per_mtok if base else None)
    )
    discount = Decimal(str(spec.get("batch_discount", base.batch_discount if base else 0)))
    if not 0 <= discount < 1:
        raise CatalogueError(f"model {model!r}: batch_discount must be within [0, 1)")
    return ModelPrice(input_price, output_price, cached, discount, written)


def parse_catalogue(document: Mapping[str, Any]) -> PriceCatalogue:
    """Validates a parsed catalogue document."""
    models = document.get("models")
    if not isinstance(models, Mapping) or not models:
        raise CatalogueError("catalogue needs a non-empty 'models' mapping")
    prices: dict[str, ModelPrice] = {}
    regional: dict[tuple[str, str], ModelPrice] = {}
    image_models: set[str] = set()
    top_k_models: set[str] = set()
    for model, spec in models.items():
        if not isinstance(spec, Mapping):
            raise CatalogueError(f"model {model!r}: expected a mapping of prices")
        prices[model] = _parse_price(model, spec, None)
        for region, override in (spec.get("regions") or {}).items():
            regional[(model, region)] = _parse_price(model, override, prices[model])
        images = spec.get("images", False)
        if not isinstance(images, bool):
            raise CatalogueError(f"model {model!r}: images must be true or false")
        if images:
            image_models.add(model)
        top_k = spec.get("top_k", False)
        if not isinstance(top_k, bool):
            raise CatalogueError(f"model {model!r}: top_k must be true or false")
        if top_k:
            top_k_models.add(model)
    return PriceCatalogue(
        str(document.get("version", "unversioned")),
        prices,
        regional,
        frozenset(image_models),
        frozenset(top_k_models),
    )


def load_catalogue(path: Path = DEFAULT_CATALOGUE) -> PriceCatalogue:
    """Reads and validates a catalogue YAML file."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CatalogueError(f"cannot read price catalogue {path}: {error}") from error
    if not isinstance(document, Mapping):
        raise CatalogueError(f"price catalogue {path} is not a mapping")
    return parse_catalogue(document)

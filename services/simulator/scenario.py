"""The simulator's scenario: served models, regions and scripted rules, parsed from YAML.

Everything is validated when the file is loaded, so a typo stops the process with a message
naming the field (`regions.eu-west.faults.error_rate must be within [0, 1]`) instead of
surfacing as odd behaviour mid-run. Prices are not here: they live in the shared catalogue.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SCENARIO = Path(__file__).resolve().parent / "default.yaml"
FINISH_REASONS = frozenset({"stop", "length", "content_filter"})
# Ways a model can get structured output wrong (a rule's `malform`, or a drawn malformation):
# a tool call naming no given function, with arguments that are not JSON, that lack a required
# field or hold a wrong type or enum value, prose where a tool call was required, and, in JSON
# mode, text that is not JSON or JSON that breaks the schema.
TOOL_MALFORMATIONS = ("tool_name", "tool_json", "tool_missing_field", "tool_wrong_type")
JSON_MALFORMATIONS = ("json_syntax", "json_schema")
MALFORMATIONS = frozenset({*TOOL_MALFORMATIONS, "skip_tool", *JSON_MALFORMATIONS})
# Region names become URL path segments; these would shadow the simulator's own routes.
_RESERVED_REGIONS = frozenset({"admin", "healthz"})
_REGION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class ScenarioError(ValueError):
    """The scenario file is malformed; the message names the field."""


@dataclass(frozen=True)
class ModelSpec:
    """A model answered with rules or synthetic prose."""

    name: str
    # Length of a synthetic answer, in tokens, before any cap.
    mean_output_tokens: int
    # The model's own output limit; None means only the request's max_tokens applies.
    max_output_tokens: int | None = None
    # The share of this model's tool calls and JSON answers that come out malformed, drawn
    # deterministically per (model, prompt), so a gate on them has work.
    malformed_rate: float = 0.0


@dataclass(frozen=True)
class LatencySpec:
    """Time to first token is lognormal, fixed by its median and 99th percentile."""

    ttft_median_ms: float
    ttft_p99_ms: float
    per_token_ms: float


@dataclass(frozen=True)
class FaultSpec:
    """Injected failures; the three error rates are probabilities per request and sum to at
    most 1. The slow tail is drawn separately, so a request can be slow without failing."""

    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_s: int = 1
    timeout_rate: float = 0.0
    timeout_hang_s: float = 30.0
    outage: bool = False
    # A slow tail, drawn apart from the faults above: this fraction of answered requests wait
    # slow_factor times their drawn time to first token and per-token time.
    slow_rate: float = 0.0
    slow_factor: float = 10.0
    # This fraction of streamed answers stop after their first piece of text: no finish_reason,
    # usage or [DONE], as when a connection drops mid-answer.
    stream_cut_rate: float = 0.0


@dataclass(frozen=True)
class RegionSpec:
    """One region's base path, latency model and faults."""

    name: str
    latency: LatencySpec
    faults: FaultSpec

    def patched(self, patch: Mapping[str, Any]) -> RegionSpec:
        """A copy with flat fields replaced (`{"outage": true}`), validated like the file."""
        latency = {f.name: getattr(self.latency, f.name) for f in dataclasses.fields(LatencySpec)}
        faults = {f.name: getattr(self.faults, f.name) for f in dataclasses.fields(FaultSpec)}
        for key, value in patch.items():
            if key in latency:
                latency[key] = value
            elif key in faults:
                faults[key] = value
            else:
                known = ", ".join(sorted([*latency, *faults]))
                raise ScenarioError(f"unknown region field {key!r} (known: {known})")
        return parse_region(self.name, {"latency": latency, "faults": faults})

    def as_json(self) -> dict[str, Any]:
        return {
            "latency": dataclasses.asdict(self.latency),
            "faults": dataclasses.asdict(self.faults),
        }


@dataclass(frozen=True)
class Rule:
    """A scripted answer: the first rule whose pattern is found in the last user message wins."""

    pattern: re.Pattern[str]
    answer: str
    # None means every model.
    models: frozenset[str] | None = None
    finish_reason: str = "stop"
    repeat: int = 1
    # The model is unsure of this answer: asked for logprobs, it reports low ones.
    unsure: bool = False
    # The answer declines the request; under a json_schema response format it goes to
    # `message.refusal` instead of the content, as OpenAI's structured outputs do.
    refusal: bool = False
    # Instead of answering, makes the model's tool call or JSON answer malformed this way
    # (one of MALFORMATIONS); such a rule never answers a plain text turn.
    malform: str | None = None

    def applies(self, model: str, prompt: str) -> bool:
        in_scope = self.models is None or model in self.models
        return in_scope and self.pattern.search(prompt) is not None

    def text_for(self, model: str) -> str:
        """The answer repeated `repeat` times, with `{model}` replaced by the model name."""
        return " ".join([self.answer.replace("{model}", model)] * self.repeat)


@dataclass(frozen=True)
class Scenario:
    models: Mapping[str, ModelSpec]
    regions: Mapping[str, RegionSpec]
    rules: tuple[Rule, ...]
    # Multiplies every latency; 0 answers at once (tests), 1 is the configured model.
    latency_scale: float = 1.0


def _mapping(where: str, raw: Any, known: frozenset[str] | None = None) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{where} must be a mapping")
    if known is not None:
        unknown = sorted(str(key) for key in raw if key not in known)
        if unknown:
            raise ScenarioError(f"{where} has unknown field(s): {', '.join(unknown)}")
    return raw


def _number(where: str, raw: Any, *, minimum: float = 0.0, maximum: float | None = None) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ScenarioError(f"{where}={raw!r} is not a number")
    if raw < minimum or (maximum is not None and raw > maximum):
        upper = "inf" if maximum is None else f"{maximum:g}"
        raise ScenarioError(f"{where}={raw!r} must be within [{minimum:g}, {upper}]")
    return float(raw)


def _integer(where: str, raw: Any, *, minimum: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ScenarioError(f"{where}={raw!r} is not an integer")
    if raw < minimum:
        raise ScenarioError(f"{where}={raw} must be at least {minimum}")
    return raw


def _boolean(where: str, raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ScenarioError(f"{where}={raw!r} is not true or false")
    return raw


def parse_model(name: str, raw: Any) -> ModelSpec:
    where = f"models.{name}"
    known = frozenset({"mean_output_tokens", "max_output_tokens", "malformed_rate"})
    spec = _mapping(where, raw, known)
    if "mean_output_tokens" not in spec:
        raise ScenarioError(f"{where}.mean_output_tokens is required")
    cap = spec.get("max_output_tokens")
    return ModelSpec(
        name=name,
        mean_output_tokens=_integer(
            f"{where}.mean_output_tokens", spec["mean_output_tokens"], minimum=1
        ),
        max_output_tokens=None
        if cap is None
        else _integer(f"{where}.max_output_tokens", cap, minimum=1),
        malformed_rate=_number(
            f"{where}.malformed_rate", spec.get("malformed_rate", 0.0), maximum=1.0
        ),
    )


def _parse_latency(where: str, raw: Any) -> LatencySpec:
    names = frozenset(f.name for f in dataclasses.fields(LatencySpec))
    spec = _mapping(where, raw, names)
    missing = sorted(names - set(spec))
    if missing:
        raise ScenarioError(f"{where} is missing {', '.join(missing)}")
    latency = LatencySpec(
        ttft_median_ms=_number(f"{where}.ttft_median_ms", spec["ttft_median_ms"]),
        ttft_p99_ms=_number(f"{where}.ttft_p99_ms", spec["ttft_p99_ms"]),
        per_token_ms=_number(f"{where}.per_token_ms", spec["per_token_ms"]),
    )
    if latency.ttft_p99_ms < latency.ttft_median_ms:
        raise ScenarioError(f"{where}.ttft_p99_ms must be at least ttft_median_ms")
    return latency


def _parse_faults(where: str, raw: Any) -> FaultSpec:
    spec = _mapping(where, raw, frozenset(f.name for f in dataclasses.fields(FaultSpec)))
    base = FaultSpec()

    def rate(key: str) -> float:
        return _number(f"{where}.{key}", spec.get(key, getattr(base, key)), maximum=1.0)

    faults = FaultSpec(
        error_rate=rate("error_rate"),
        rate_limit_rate=rate("rate_limit_rate"),
        retry_after_s=_integer(
            f"{where}.retry_after_s", spec.get("retry_after_s", base.retry_after_s), minimum=0
        ),
        timeout_rate=rate("timeout_rate"),
        timeout_hang_s=_number(
            f"{where}.timeout_hang_s", spec.get("timeout_hang_s", base.timeout_hang_s)
        ),
        outage=_boolean(f"{where}.outage", spec.get("outage", base.outage)),
        slow_rate=rate("slow_rate"),
        slow_factor=_number(
            f"{where}.slow_factor", spec.get("slow_factor", base.slow_factor), minimum=1.0
        ),
        stream_cut_rate=rate("stream_cut_rate"),
    )
    if faults.error_rate + faults.rate_limit_rate + faults.timeout_rate > 1.0:
        raise ScenarioError(f"{where}: error_rate + rate_limit_rate + timeout_rate exceeds 1")
    return faults


def parse_region(name: str, raw: Any) -> RegionSpec:
    where = f"regions.{name}"
    if not _REGION_NAME.match(name) or name in _RESERVED_REGIONS:
        reserved = " or ".join(sorted(_RESERVED_REGIONS))
        raise ScenarioError(
            f"{where}: a region name must match {_REGION_NAME.pattern} and not be {reserved}"
        )
    spec = _mapping(where, raw, frozenset({"latency", "faults"}))
    if "latency" not in spec:
        raise ScenarioError(f"{where}.latency is required")
    return RegionSpec(
        name=name,
        latency=_parse_latency(f"{where}.latency", spec["latency"]),
        faults=_parse_faults(f"{where}.faults", spec.get("faults", {})),
    )


def parse_rule(index: int, raw: Any, models: Mapping[str, ModelSpec]) -> Rule:
    where = f"rules[{index}]"
    known = frozenset(
        {"match", "models", "answer", "finish_reason", "repeat", "unsure", "refusal", "malform"}
    )
    spec = _mapping(where, raw, known)
    malform = spec.get("malform")
    if malform is not None and malform not in MALFORMATIONS:
        allowed = ", ".join(sorted(MALFORMATIONS))
        raise ScenarioError(f"{where}.malform={malform!r} is not one of {allowed}")
    if malform is not None and "answer" in spec:
        raise ScenarioError(f"{where} has both answer and malform; give one")
    for key in ("match",) if malform is not None else ("match", "answer"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise ScenarioError(f"{where}.{key} must be a non-empty string")
    try:
        pattern = re.compile(spec["match"])
    except re.error as error:
        raise ScenarioError(f"{where}.match is not a valid regex: {error}") from None
    scope = spec.get("models")
    if scope is not None:
        if not isinstance(scope, list) or not all(isinstance(m, str) for m in scope):
            raise ScenarioError(f"{where}.models must be a list of model names")
        unknown = sorted(set(scope) - set(models))
        if unknown:
            raise ScenarioError(f"{where}.models names unknown model(s): {', '.join(unknown)}")
    finish = spec.get("finish_reason", "stop")
    if finish not in FINISH_REASONS:
        allowed = ", ".join(sorted(FINISH_REASONS))
        raise ScenarioError(f"{where}.finish_reason={finish!r} is not one of {allowed}")
    return Rule(
        pattern=pattern,
        answer=spec.get("answer", ""),
        models=None if scope is None else frozenset(scope),
        finish_reason=finish,
        repeat=_integer(f"{where}.repeat", spec.get("repeat", 1), minimum=1),
        unsure=_flag(where, "unsure", spec.get("unsure", False)),
        refusal=_flag(where, "refusal", spec.get("refusal", False)),
        malform=malform,
    )


def _flag(where: str, key: str, raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ScenarioError(f"{where}.{key} must be true or false")
    return raw


def parse_scenario(document: Any) -> Scenario:
    """Validates a parsed scenario document."""
    root = _mapping(
        "scenario", document, frozenset({"latency_scale", "models", "regions", "rules"})
    )
    raw_models = _mapping("models", root.get("models"))
    raw_regions = _mapping("regions", root.get("regions"))
    if not raw_models:
        raise ScenarioError("models must name at least one model")
    if not raw_regions:
        raise ScenarioError("regions must name at least one region")
    models = {str(name): parse_model(str(name), spec) for name, spec in raw_models.items()}
    regions = {str(name): parse_region(str(name), spec) for name, spec in raw_regions.items()}
    raw_rules = root.get("rules") or []
    if not isinstance(raw_rules, list):
        raise ScenarioError("rules must be a list")
    return Scenario(
        models=models,
        regions=regions,
        rules=tuple(parse_rule(i, rule, models) for i, rule in enumerate(raw_rules)),
        latency_scale=_number("latency_scale", root.get("latency_scale", 1.0)),
    )


def load_scenario(path: Path = DEFAULT_SCENARIO) -> Scenario:
    """Reads and validates a scenario YAML file."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ScenarioError(f"cannot read scenario {path}: {error}") from error
    try:
        return parse_scenario(document)
    except ScenarioError as error:
        raise ScenarioError(f"{path}: {error}") from None

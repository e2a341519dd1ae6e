"""Tenant tier policies as data: parsed from YAML and validated at start-up.

A policy names, per tenant, the API keys (as SHA-256 digests), the baseline model savings are
measured against, and per model class the ordered tiers with the gates each tier's answer
must pass.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from services.router.compression_policy import CompressionPolicy, parse_compression
from services.router.gates import GATE_NAMES, GateSettings
from shared.errors import InvalidRequest, Unauthenticated, quoted
from shared.pricing import PriceCatalogue
from shared.settings import ConfigError


class PolicyError(ConfigError):
    """The policy file is malformed; the message names the tenant and field."""


@dataclass(frozen=True)
class TierSpec:
    index: int  # 1-based, as reported to callers
    model: str
    gates: tuple[str, ...]
    # Seconds this tier may take before the router gives up on it and escalates; None = no cap.
    latency_budget_s: float | None = None
    # For the `scorer` gate: the answer must score P(right) >= min_score.
    min_score: float | None = None
    # For the `logprob` gate: floors on the answer's mean and lowest token logprob (<= 0).
    min_mean_logprob: float | None = None
    min_token_logprob: float | None = None

    @property
    def wants_logprobs(self) -> bool:
        return "logprob" in self.gates


class OnExhausted(StrEnum):
    """What happens to a tenant's requests once its budget is spent."""

    REJECT = "reject"
    # Serve from the cheapest tier only, never escalating.
    DOWNGRADE = "downgrade"


@dataclass(frozen=True)
class Budget:
    """Spending limits of a tenant in nano-USD; 0 means no limit."""

    daily_nano_usd: int = 0
    monthly_nano_usd: int = 0
    on_exhausted: OnExhausted = OnExhausted.REJECT


@dataclass(frozen=True)
class ModelClass:
    name: str
    tiers: tuple[TierSpec, ...]
    max_tokens: int
    gate_settings: GateSettings
    # Temperature of requests that set none; explicit so cache keys and caching rules see it.
    default_temperature: float = 0.0
    # The start-tier predictor picks where each request enters the cascade.
    learned_start: bool = False
    # Short classification-style calls the batcher may pack with others sharing the system
    # prompt into one upstream call.
    packable: bool = False
    # The cheap model the `judge` gate asks whether an answer is correct and complete.
    judge_model: str = ""
    # How prompts of this class are compressed (compression_policy.py); None: service defaults.
    compression: CompressionPolicy | None = None

    @property
    def uses_learning(self) -> bool:
        """Needs the scorer's embedding model: a `scorer` gate or the learned start tier."""
        return self.learned_start or any("scorer" in tier.gates for tier in self.tiers)


@dataclass(frozen=True)
class TenantPolicy:
    tenant_id: str
    key_digests: frozenset[str]
    baseline_model: str
    default_model_class: str
    model_classes: Mapping[str, ModelClass]
    # Sampled answers (temperature > 0) differ run to run; serving one from the cache is a
    # choice the tenant makes, not a default.
    cache_sampled: bool = False
    # Share of semantic cache hits audited in [0, 1]: asked again through the cascade in the
    # background (billed to the tenant) and reported right or wrong to the cache.
    cache_audit_rate: float = 0.0
    # Shadow checks: on a miss, the cache's nearest rejected candidate is compared with the
    # fresh answer and the verdict reported, so the namespace's threshold learns below its bar.
    # Free (no model call), so on unless the tenant turns it off.
    cache_shadow_checks: bool = True
    # Bound on the share of wrong semantic hits, in (0, 1), sent on every cache Lookup: a
    # candidate is served only where the recorded verdicts prove it (cache README, "Error
    # bound"). None (the default) serves on the cache verifier's own bar: under a bound a fresh
    # namespace serves nothing semantic until ~300 clean verdicts (1%) prove a bar.
    cache_max_wrong_rate: float | None = None
    # Cap on one request's total cost when the caller sets none; 0 means no cap.
    max_cost_nano_usd: int = 0
    budget: Budget = Budget()

    def model_class(self, name: str) -> ModelClass:
        chosen = name or self.default_model_class
        found = self.model_classes.get(chosen)
        if found is None:
            known = ", ".join(sorted(self.model_classes))
            raise InvalidRequest(
                f"unknown model_class {quoted(chosen)} for tenant {self.tenant_id!r}; "
                f"known: {known}"
            )
        return found


@dataclass(frozen=True)
class Policy:
    version: str
    tenants: Mapping[str, TenantPolicy]

    @property
    def uses_learning(self) -> bool:
        """Some model class needs the answer scorer and its embedding model."""
        return any(
            spec.uses_learning
            for tenant in self.tenants.values()
            for spec in tenant.model_classes.values()
        )

    def authenticate(self, api_key: str) -> TenantPolicy:
        """The tenant owning api_key; constant-time comparison of digests."""
        if not api_key:
            raise Unauthenticated(
                "missing API key: send it as `x-api-key` or `authorization: Bearer <key>` metadata"
            )
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        for tenant in self.tenants.values():
            if any(hmac.compare_digest(digest, known) for known in tenant.key_digests):
                return tenant
        raise Unauthenticated("unknown API key")


def _require(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in mapping or mapping[key] in (None, "", []):
        raise PolicyError(f"{where}: '{key}' is required")
    return mapping[key]


def _optional_float(tier: Mapping[str, Any], key: str, where: str) -> float | None:
    value = tier.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{where}.{key} must be a number, not {value!r}")
    return float(value)


def _gate_thresholds(tier: Mapping[str, Any], gates: tuple[str, ...], where: str) -> TierSpec:
    """The learned gates' per-tier thresholds; each gate needs its own, and no stray ones."""
    min_score = _optional_float(tier, "min_score", where)
    if ("scorer" in gates) != (min_score is not None):
        raise PolicyError(
            f"{where}.min_score: the 'scorer' gate and min_score go together (gate listed: "
            f"{'scorer' in gates}, min_score set: {min_score is not None})"
        )
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise PolicyError(f"{where}.min_score must be within [0, 1], not {min_score}")
    floors = {
        key: _optional_float(tier, key, where) for key in ("min_mean_logprob", "min_token_logprob")
    }
    has_floor = any(v is not None for v in floors.values())
    if ("logprob" in gates) != has_floor:
        raise PolicyError(
            f"{where}: the 'logprob' gate needs min_mean_logprob or min_token_logprob, and "
            "those need the gate"
        )
    for key, value in floors.items():
        if value is not None and value > 0:
            raise PolicyError(f"{where}.{key} must be <= 0 (a log probability), not {value}")
    return TierSpec(
        0, "", gates, None, min_score, floors["min_mean_logprob"], floors["min_token_logprob"]
    )


def _parse_tier(index: int, tier: Any, where: str, catalogue: PriceCatalogue) -> TierSpec:
    if not isinstance(tier, Mapping):
        raise PolicyError(f"{where} must be a mapping")
    model = str(_require(tier, "model", where))
    if not catalogue.knows(model):
        raise PolicyError(f"{where}: model {model!r} is not in the price catalogue")
    gates = tuple(str(g) for g in tier.get("gates", ()))
    unknown = sorted(set(gates) - GATE_NAMES)
    if unknown:
        raise PolicyError(f"{where}: unknown gates {unknown}; known: {sorted(GATE_NAMES)}")
    budget_s = tier.get("latency_budget_s")
    if budget_s is not None and not float(budget_s) > 0:
        raise PolicyError(f"{where}.latency_budget_s must be positive")
    thresholds = _gate_thresholds(tier, gates, where)
    return replace(
        thresholds,
        index=index,
        model=model,
        latency_budget_s=None if budget_s is None else float(budget_s),
    )


def _flag(raw: Mapping[str, Any], key: str, where: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise PolicyError(f"{where}.{key} must be true or false, not {value!r}")
    return value


def _parse_judge_model(
    raw: Mapping[str, Any], tiers: list[TierSpec], where: str, catalogue: PriceCatalogue
) -> str:
    judge_model = str(raw.get("judge_model") or "")
    if any("judge" in tier.gates for tier in tiers) and not judge_model:
        raise PolicyError(f"{where}.judge_model is required when a tier has the 'judge' gate")
    if judge_model and not catalogue.knows(judge_model):
        raise PolicyError(
            f"{where}.judge_model: model {judge_model!r} is not in the price catalogue"
        )
    return judge_model


def _parse_model_class(
    name: str, raw: Mapping[str, Any], where: str, catalogue: PriceCatalogue
) -> ModelClass:
    tiers = [
        _parse_tier(index, tier, f"{where}.tiers[{index - 1}]", catalogue)
        for index, tier in enumerate(_require(raw, "tiers", where), 1)
    ]
    settings = raw.get("gate_settings") or {}
    try:
        gate_settings = GateSettings.from_mapping(settings)
    except (TypeError, ValueError) as error:
        raise PolicyError(f"{where}.gate_settings: {error}") from None
    max_tokens = int(raw.get("max_tokens", 512))
    if max_tokens <= 0:
        raise PolicyError(f"{where}.max_tokens must be positive")
    temperature = float(raw.get("temperature", 0.0))
    if not 0 <= temperature <= 2:
        raise PolicyError(f"{where}.temperature must be within [0, 2]")
    return ModelClass(
        name,
        tuple(tiers),
        max_tokens,
        gate_settings,
        temperature,
        learned_start=_flag(raw, "learned_start", where),
        packable=_flag(raw, "packable", where),
        judge_model=_parse_judge_model(raw, tiers, where, catalogue),
        compression=parse_compression(raw.get("compression"), f"{where}.compression"),
    )


def _parse_tenant(tenant_id: str, raw: Any, catalogue: PriceCatalogue) -> TenantPolicy:
    where = f"tenants.{tenant_id}"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where} must be a mapping")
    digests = frozenset(str(d).lower() for d in _require(raw, "api_key_sha256", where))
    if any(len(d) != 64 for d in digests):
        raise PolicyError(f"{where}.api_key_sha256 entries must be 64 hex characters")
    baseline = str(_require(raw, "baseline_model", where))
    if not catalogue.knows(baseline):
        raise PolicyError(f"{where}.baseline_model {baseline!r} is not in the price catalogue")
    classes = {
        name: _parse_model_class(name, spec, f"{where}.model_classes.{name}", catalogue)
        for name, spec in _require(raw, "model_classes", where).items()
    }
    default = str(raw.get("default_model_class", next(iter(classes))))
    if default not in classes:
        raise PolicyError(f"{where}.default_model_class {default!r} is not a model class")
    cache = raw.get("cache") or {}
    known = {"sampled", "audit_rate", "shadow_checks", "max_wrong_rate"}
    if not isinstance(cache, Mapping) or set(cache) - known:
        raise PolicyError(
            f"{where}.cache accepts only 'sampled: true|false', 'audit_rate: <0..1>' and "
            "'shadow_checks: true|false', plus 'max_wrong_rate: <0..1, exclusive>'"
        )
    shadow = cache.get("shadow_checks", True)
    if not isinstance(shadow, bool):
        raise PolicyError(f"{where}.cache.shadow_checks must be true or false, not {shadow!r}")
    return TenantPolicy(
        tenant_id,
        digests,
        baseline,
        default,
        classes,
        bool(cache.get("sampled")),
        cache_audit_rate=_audit_rate(cache, f"{where}.cache"),
        cache_shadow_checks=shadow,
        cache_max_wrong_rate=_max_wrong_rate(cache, f"{where}.cache"),
        max_cost_nano_usd=usd_to_nano(raw.get("max_cost_usd", 0), f"{where}.max_cost_usd"),
        budget=_parse_budget(raw.get("budget") or {}, f"{where}.budget"),
    )


def _audit_rate(cache: Mapping[str, Any], where: str) -> float:
    rate = _optional_float(cache, "audit_rate", where)
    if rate is None:
        return 0.0
    if not 0.0 <= rate <= 1.0:
        raise PolicyError(f"{where}.audit_rate must be within [0, 1], not {rate}")
    return rate


def _max_wrong_rate(cache: Mapping[str, Any], where: str) -> float | None:
    rate = _optional_float(cache, "max_wrong_rate", where)
    if rate is not None and not 0.0 < rate < 1.0:
        raise PolicyError(f"{where}.max_wrong_rate must be within (0, 1), e.g. 0.01, not {rate}")
    return rate


def usd_to_nano(value: Any, where: str) -> int:
    """Parses a non-negative USD amount into integer nano-USD."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise PolicyError(f"{where}={value!r} is not a USD amount") from None
    if not amount.is_finite() or amount < 0:
        raise PolicyError(f"{where} must be a non-negative USD amount")
    return int(amount * 1_000_000_000)


def _parse_budget(raw: Any, where: str) -> Budget:
    if not isinstance(raw, Mapping) or set(raw) - {"daily_usd", "monthly_usd", "on_exhausted"}:
        raise PolicyError(f"{where} accepts daily_usd, monthly_usd and on_exhausted")
    try:
        on_exhausted = OnExhausted(raw.get("on_exhausted", "reject"))
    except ValueError:
        raise PolicyError(f"{where}.on_exhausted must be 'reject' or 'downgrade'") from None
    return Budget(
        usd_to_nano(raw.get("daily_usd", 0), f"{where}.daily_usd"),
        usd_to_nano(raw.get("monthly_usd", 0), f"{where}.monthly_usd"),
        on_exhausted,
    )


def parse_policy(document: Any, catalogue: PriceCatalogue) -> Policy:
    if not isinstance(document, Mapping):
        raise PolicyError("the policy must be a mapping")
    version = str(_require(document, "version", "policy"))
    tenants = {
        str(tenant_id): _parse_tenant(str(tenant_id), raw, catalogue)
        for tenant_id, raw in _require(document, "tenants", "policy").items()
    }
    _check_keys_unique(tenants.values())
    return Policy(version, tenants)


def _check_keys_unique(tenants: Iterable[TenantPolicy]) -> None:
    """A key must authenticate as one tenant: one listed under two would silently belong to
    whichever the file names first."""
    owners: dict[str, str] = {}
    for tenant in tenants:
        for digest in sorted(tenant.key_digests):
            owner = owners.setdefault(digest, tenant.tenant_id)
            if owner != tenant.tenant_id:
                # A prefix names the digest without pasting a credential's hash into logs.
                raise PolicyError(
                    f"tenants {owner!r} and {tenant.tenant_id!r} list the same API key "
                    f"(api_key_sha256 {digest[:8]}...); a key must belong to one tenant"
                )


def load_policy(path: Path, catalogue: PriceCatalogue) -> Policy:
    """Reads and validates a policy file; every error names the file, the field and why."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise PolicyError(f"cannot read policy {path}: {error}") from error
    try:
        return parse_policy(document, catalogue)
    except (PolicyError, TypeError, ValueError, AttributeError) as error:
        raise PolicyError(f"{path}: {error}") from None

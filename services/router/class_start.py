"""Where a request enters the cascade: per request class, learnt from how its tiers fared.

Some kinds of request fail a cheap tier every time, whatever the question: a `max_tokens` too
small for the cheap model to finish, a JSON schema it cannot follow, tools it calls wrongly.
Each such request pays the cheap tier's attempt and then the tier that answers, so the class
costs more than calling that tier directly, and can cost more than calling the baseline. The
router therefore learns per request class, not per prompt:

- **Class**: policy version, tenant, model class, response-format kind, whether tools are
  offered, and the max_tokens band (unset, <=16, <=256, >256).
- **Evidence**: per tier, a decayed count of answers that passed and failed its gates (each new
  observation of a tier weighs the earlier ones by `decay`, so ~1/(1-decay) recent attempts
  count). Its P(pass) is the mean of a Beta(0.1 + passed, 0.1 + failed) posterior. The prior
  is weak on purpose: a cheap model often costs 1/50 of the baseline, so trying it is worth
  while unless it fails nearly always, and after a handful of failures only a weak prior lets
  the estimate go that low (`min_evidence` guards against deciding on fewer).
- **Decision**: the start tier with the lowest expected cost, sum over t >= s of cost_t times
  P(every tier in s..t-1 failed), the last tier always answering (the same rule as the
  per-prompt predictor in learning/start_tier.py). cost_t is this prompt's price on tier t's
  model, the same yardstick for every tier whether tried or not. A tier is passed over only
  with at least `min_evidence` of its own observations, or when the per-prompt predictor (a
  model class with `learned_start`) estimates it; without either it is tried. With both, the
  lower estimate counts: the class sees what the prompt's neighbours cannot (format, tools,
  max_tokens), and the neighbours what a class average cannot (this question is hard). That is
  the one start-tier decision of the cascade.
- **Never above the baseline**: the start is never above the most expensive tier whose prompt
  costs no more than the baseline model's, so starting high never costs more than calling the
  baseline directly.
- **Exploration**: with probability `exploration` a class that starts above its cheapest tier
  starts one tier lower instead, so a cheap tier that recovers (a model update, a fixed prompt)
  is noticed and the class comes back down.

Domain code: no gRPC. One instance per router process, constructed in server.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from services.router.model import ChatRequest

# Spans: the tier the request entered at (1-based) and the request class it was decided for.
CLASS_START_TIER = "sluice.router.class_start_tier"
CLASS_KEY = "sluice.router.class_key"
_PRIOR = 0.1  # a tenth of a pass and of a failure before any evidence


@dataclass(frozen=True)
class ClassStartSettings:
    decay: float = 0.95
    min_evidence: float = 5.0
    exploration: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.decay <= 1.0:
            raise ValueError("decay must be within (0, 1]")
        if self.min_evidence < 0 or not 0.0 <= self.exploration <= 1.0:
            raise ValueError("min_evidence must be >= 0 and exploration within [0, 1]")


@dataclass
class _TierRecord:
    """One tier's decayed evidence within one class."""

    passed: float = 0.0
    failed: float = 0.0

    @property
    def evidence(self) -> float:
        return self.passed + self.failed

    @property
    def pass_rate(self) -> float:
        return (self.passed + _PRIOR) / (self.evidence + 2 * _PRIOR)


@dataclass(frozen=True)
class StartDecision:
    """Where a request of `key`'s class enters the cascade (0-based) and why."""

    tier: int
    key: str
    reason: str
    explored: bool = False
    # The figures behind it, for the reason and for tests: P(pass) and E[cost] per tier.
    acceptance: tuple[float, ...] = field(default=(), repr=False)
    expected: tuple[float, ...] = field(default=(), repr=False)


def max_tokens_band(max_tokens: int) -> str:
    if max_tokens <= 0:
        return "unset"
    return "<=16" if max_tokens <= 16 else "<=256" if max_tokens <= 256 else ">256"


def class_key(request: ChatRequest) -> str:
    """The request's class as recorded on spans and in the cost table."""
    tools = "tools" if request.tools.offered else "no-tools"
    band = max_tokens_band(request.sampling.max_tokens)
    return (
        f"{request.model_class.name}/{request.response_format.kind.value}/{tools}/max_tokens {band}"
    )


class ClassStarts:
    """The per-class evidence of one router process, and the start-tier decision."""

    def __init__(
        self,
        settings: ClassStartSettings | None = None,
        draw: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings or ClassStartSettings()
        # A uniform draw in [0, 1) for exploration; seeded so runs repeat.
        self._draw = draw or random.Random(0).random
        self._classes: dict[tuple[str, str, str, tuple[str, ...]], list[_TierRecord]] = {}

    def _records(self, request: ChatRequest) -> list[_TierRecord]:
        # The tiers' models are part of the key: a request served by fewer tiers (a spent
        # budget's downgrade) has evidence of its own.
        models = tuple(tier.model for tier in request.model_class.tiers)
        key = (request.policy_version, request.tenant.tenant_id, class_key(request), models)
        records = self._classes.get(key)
        if records is None:
            records = [_TierRecord() for _ in models]
            self._classes[key] = records
        return records

    def record(self, request: ChatRequest, tier: int, passed: bool) -> None:
        """One attempt of the 0-based `tier` for this request: whether its answer passed the
        gates."""
        record = self._records(request)[tier]
        decay = self.settings.decay
        record.passed = record.passed * decay + float(passed)
        record.failed = record.failed * decay + float(not passed)

    def decide(
        self,
        request: ChatRequest,
        prompt_costs: Sequence[float],
        baseline_cost: float,
        prompt_acceptance: Sequence[float] | None = None,
    ) -> StartDecision:
        """The start tier for this request. prompt_costs: this prompt's cost on each tier's
        model; baseline_cost: the same on the baseline model; prompt_acceptance: the
        per-prompt predictor's P(accepted) per tier, when the model class has one."""
        records = self._records(request)
        key = class_key(request)
        acceptance = self._acceptance(records, prompt_acceptance)
        costs = [float(cost) for cost in prompt_costs]
        expected = _expected_costs(acceptance, costs)
        cap = max((t for t, c in enumerate(costs) if c <= baseline_cost), default=0)
        # The first tier nothing is known about is tried, never passed over.
        unknown = next(
            (
                t
                for t, r in enumerate(records)
                if r.evidence < self.settings.min_evidence and prompt_acceptance is None
            ),
            len(records) - 1,
        )
        chosen = min(range(min(cap, unknown) + 1), key=lambda t: (expected[t], t))
        figures = "; ".join(
            f"tier {t + 1} P(accept)={acceptance[t]:.2f} over {records[t].evidence:.1f} "
            f"E[cost]={expected[t]:.3g}"
            for t in range(len(records))
        )
        if chosen > 0 and self._draw() < self.settings.exploration:
            why = f"exploring one tier below the cheapest expected start (tier {chosen + 1})"
            return StartDecision(
                chosen - 1, key, f"{why} for class {key}; {figures}", True, acceptance, expected
            )
        capped = (
            f", capped at tier {cap + 1} (the baseline's price)" if cap + 1 < len(costs) else ""
        )
        reason = f"lowest expected cost for class {key}{capped}; {figures}"
        return StartDecision(chosen, key, reason, False, acceptance, expected)

    def _acceptance(
        self, records: list[_TierRecord], prompt_acceptance: Sequence[float] | None
    ) -> tuple[float, ...]:
        """P(pass) per tier; the last tier always answers."""
        estimates = []
        for tier, record in enumerate(records[:-1]):
            known = record.evidence >= self.settings.min_evidence
            by_prompt = prompt_acceptance[tier] if prompt_acceptance is not None else None
            if known and by_prompt is not None:
                estimates.append(min(record.pass_rate, by_prompt))
            elif known:
                estimates.append(record.pass_rate)
            else:
                estimates.append(1.0 if by_prompt is None else by_prompt)
        return (*estimates, 1.0)


def _expected_costs(acceptance: Sequence[float], costs: Sequence[float]) -> tuple[float, ...]:
    """Expected spend of a request entering at each tier."""
    expected = []
    for start in range(len(costs)):
        reach, total = 1.0, 0.0
        for tier in range(start, len(costs)):
            total += reach * costs[tier]
            reach *= 1.0 - acceptance[tier]
        expected.append(total)
    return tuple(expected)

"""Learned start tier: skip cascade tiers that are unlikely to be accepted for this prompt.

RouteLLM (Ong et al. 2024, "RouteLLM: Learning to Route LLMs with Preference Data") routes each
prompt from its embedding; its similarity-weighted (SW) ranking router weighs each labelled
training prompt by its similarity to the new one. Here the labels are the cascade's own gate
outcomes, learnt online: each finished request tells, for every tier it tried, whether that
tier's answer was accepted.

- Estimate: for each tier, P(accepted | tried) from the k earlier prompts that tried it with
  the largest weight, similarity times age (an observation counts half after `half_life`
  later observations, so the memory follows drifting traffic and model updates), shrunk
  towards a prior: an offline-trained per-tier logistic model, or the tier's decayed overall
  acceptance rate when none is shipped.
- Choice: the start tier with the lowest expected cost, sum over tiers t >= s of
  cost_t * P(every tier in s..t-1 was rejected); the last tier always accepts.
- Exploration floor: with probability `exploration` a tier cheaper than the chosen one starts
  instead, so skipped tiers keep producing observations and a wrong estimate can recover.

The memory is exact cosine search in numpy: at 10k observations per tier a matrix-vector
product costs about a millisecond, the same as a flat FAISS index, and a ring buffer needs no
index rebuilds when old observations are dropped.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

FORMAT = "sluice.start-tier-prior/1"
Array = NDArray[np.float64]


@dataclass(frozen=True)
class StartTierSettings:
    neighbours: int = 16
    half_life: float = 2000.0  # observations after which an observation's weight halves
    exploration: float = 0.05  # probability of starting below the chosen tier
    prior_weight: float = 4.0  # the prior counts as this many fully similar observations
    capacity: int = 10_000  # observations kept per tier; the oldest go first

    def __post_init__(self) -> None:
        if self.neighbours < 1 or self.capacity < 1:
            raise ValueError("neighbours and capacity must be positive")
        if self.half_life <= 0 or self.prior_weight <= 0:
            raise ValueError("half_life and prior_weight must be positive")
        if not 0.0 <= self.exploration <= 1.0:
            raise ValueError("exploration must be within [0, 1]")


@dataclass(frozen=True)
class TierPrior:
    """Offline P(tier accepted | prompt): logistic per tier on the prompt's principal components."""

    center: Array  # (dim,)
    basis: Array  # (dim, k)
    weights: Array  # (tiers, k)
    bias: Array  # (tiers,)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def probabilities(self, vector: NDArray[np.floating]) -> Array:
        z = (np.asarray(vector, dtype=np.float64) - self.center) @ self.basis
        logits = np.clip(self.weights @ z + self.bias, -30.0, 30.0)
        return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "center": np.round(self.center, 6).tolist(),
            "basis": np.round(self.basis, 6).tolist(),
            "weights": np.round(self.weights, 6).tolist(),
            "bias": np.round(self.bias, 6).tolist(),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TierPrior:
        if raw.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file (format={raw.get('format')!r})")
        prior = cls(
            np.asarray(raw["center"], dtype=np.float64),
            np.asarray(raw["basis"], dtype=np.float64),
            np.asarray(raw["weights"], dtype=np.float64),
            np.asarray(raw["bias"], dtype=np.float64),
            dict(raw.get("metadata", {})),
        )
        dim, k = prior.basis.shape
        if prior.center.shape != (dim,) or prior.weights.shape[1:] != (k,):
            raise ValueError("start-tier prior shapes do not match")
        if prior.bias.shape != prior.weights.shape[:1]:
            raise ValueError("start-tier prior needs one bias per tier")
        return prior

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: Path) -> TierPrior:
        return cls.from_json(json.loads(path.read_text()))


@dataclass(frozen=True)
class StartChoice:
    """Where a request enters the cascade (0-based) and why."""

    tier: int
    reason: str
    explored: bool = False


class _TierMemory:
    """Ring buffer of (prompt vector, accepted, step) for one tier."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._vectors: NDArray[np.float32] | None = None
        self._accepted = np.zeros(capacity)
        self._steps = np.zeros(capacity)
        self._size = 0
        self._head = 0

    def add(self, vector: NDArray[np.float32], accepted: bool, step: int) -> None:
        if self._vectors is None:
            self._vectors = np.zeros((self._capacity, len(vector)), dtype=np.float32)
        self._vectors[self._head] = vector
        self._accepted[self._head] = float(accepted)
        self._steps[self._head] = step
        self._head = (self._head + 1) % self._capacity
        self._size = min(self._size + 1, self._capacity)

    def similarities(self, vector: NDArray[np.float32]) -> tuple[Array, Array, Array]:
        """(cosine similarity, accepted, step) of every stored observation."""
        if self._vectors is None or self._size == 0:
            empty = np.zeros(0)
            return empty, empty, empty
        sims = (self._vectors[: self._size] @ vector).astype(np.float64)
        return sims, self._accepted[: self._size], self._steps[: self._size]


class StartTierPredictor:
    """Chooses where a request enters the cascade and learns from how each request ended."""

    def __init__(
        self,
        tiers: int,
        settings: StartTierSettings | None = None,
        prior: TierPrior | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if tiers < 1:
            raise ValueError("a cascade has at least one tier")
        if prior is not None and prior.bias.shape != (tiers,):
            raise ValueError(f"the prior covers {prior.bias.shape[0]} tiers, not {tiers}")
        self.tiers = tiers
        self.settings = settings or StartTierSettings()
        self._prior = prior
        self._rng = rng or random.Random(0)
        self._memories = [_TierMemory(self.settings.capacity) for _ in range(tiers)]
        # Decayed totals of (accepted, tried) per tier: the fallback prior without a file.
        self._totals = np.zeros((tiers, 2))
        self._step = 0

    def _decay(self, steps: Array) -> Array:
        return np.asarray(0.5 ** ((self._step - steps) / self.settings.half_life))

    def _prior_of(self, vector: NDArray[np.float32]) -> Array:
        if self._prior is not None:
            return self._prior.probabilities(vector)
        accepted, tried = self._totals[:, 0], self._totals[:, 1]
        return np.asarray((0.5 + accepted) / (1.0 + tried))

    def acceptance(self, vector: NDArray[np.float32]) -> Array:
        """Estimated P(tier's answer accepted | tier tried) per tier; the last tier is 1."""
        prior = self._prior_of(vector)
        estimate = np.ones(self.tiers)
        weight0 = self.settings.prior_weight
        for tier in range(self.tiers - 1):
            sims, accepted, steps = self._memories[tier].similarities(vector)
            # The k observations that count most: similar and recent (ties go to the newest).
            weights = np.clip(sims, 0.0, None) * self._decay(steps)
            top = np.argsort(-weights, kind="stable")[: self.settings.neighbours]
            estimate[tier] = (weight0 * prior[tier] + float(weights[top] @ accepted[top])) / (
                weight0 + float(weights[top].sum())
            )
        return estimate

    def expected_costs(self, vector: NDArray[np.float32], tier_costs: Sequence[float]) -> Array:
        """Expected spend of a request entering at each tier."""
        if len(tier_costs) != self.tiers:
            raise ValueError(f"expected {self.tiers} tier costs, got {len(tier_costs)}")
        accept = self.acceptance(vector)
        costs = np.zeros(self.tiers)
        for start in range(self.tiers):
            reach = 1.0
            for tier in range(start, self.tiers):
                costs[start] += reach * tier_costs[tier]
                reach *= 1.0 - accept[tier]
        return costs

    def choose(self, vector: NDArray[np.float32], tier_costs: Sequence[float]) -> int:
        """Index of the tier to start at. tier_costs: this prompt's cost of each tier, any unit."""
        return self.decide(vector, tier_costs).tier

    def decide(self, vector: NDArray[np.float32], tier_costs: Sequence[float]) -> StartChoice:
        """As choose(), with the estimates behind the choice, for spans and cost tables."""
        accept = self.acceptance(vector)
        expected = self.expected_costs(vector, tier_costs)
        chosen = int(np.argmin(expected))
        figures = ", ".join(
            f"tier {t + 1} P(accept)={accept[t]:.2f} E[cost]={expected[t]:.3g}"
            for t in range(self.tiers)
        )
        if chosen > 0 and self._rng.random() < self.settings.exploration:
            explored = self._rng.randrange(chosen)
            why = f"exploring below the cheapest expected start (tier {chosen + 1}); {figures}"
            return StartChoice(explored, why, explored=True)
        return StartChoice(chosen, f"lowest expected cost; {figures}")

    def observe(
        self, vector: NDArray[np.float32], tier_results: Sequence[tuple[int, bool]]
    ) -> None:
        """Records one finished request: (tier index, gate passed) for every tier it tried.

        Pass the gates' verdict for the last tier too, not the forced acceptance; the last
        tier is not learnt (it always answers) but its verdict is harmless.
        """
        self._step += 1
        self._totals *= 0.5 ** (1.0 / self.settings.half_life)
        for tier, accepted in tier_results:
            if not 0 <= tier < self.tiers:
                raise ValueError(f"tier {tier} is outside 0..{self.tiers - 1}")
            if tier == self.tiers - 1:
                continue
            self._memories[tier].add(np.asarray(vector, dtype=np.float32), accepted, self._step)
            self._totals[tier] += (float(accepted), 1.0)

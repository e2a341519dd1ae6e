"""Chooses the cascade's tiers and score thresholds from training data alone.

FrugalGPT's cascade optimisation, by exhaustive search: every chain of one or two cheap models
followed by the strongest model is scored with out-of-fold scores, and per-tier thresholds are
grid-searched for two operating points:
- `budget`: the most accurate setting whose mean cost on every task stays within
  `budget_fraction` of always calling the strongest model on that task (the issue's target is
  15% per split). Tasks are known when fitting, never at run time: the thresholds are global,
  and the scorer tells prompts apart by their format;
- `parity`: the cheapest setting whose accuracy reaches the strongest model's.
The chain with the best budget-point accuracy is kept; both points are recorded for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.router.learning.fit import Standardiser, fit_logistic, principal_directions
from services.router.learning.simulate import (
    BatchScore,
    Case,
    CostCap,
    Summary,
    complete,
    fit_thresholds,
    score_table,
    single,
    summarise,
)
from services.router.learning.start_tier import TierPrior

FORMAT = "sluice.cascade-design/1"
DEFAULT_DESIGN = Path(__file__).resolve().parent / "models" / "cascade.json"
FRONTIER_FRACTIONS = (0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.25)


@dataclass(frozen=True)
class OperatingPoint:
    thresholds: tuple[float, ...]  # one per tier but the last
    train: Summary

    def to_json(self) -> dict[str, Any]:
        return {"thresholds": list(self.thresholds), "train": self.train.__dict__}


@dataclass(frozen=True)
class CascadeDesign:
    tiers: tuple[str, ...]
    strong: str
    budget_fraction: float
    points: Mapping[str, OperatingPoint]
    # Train accuracy and cost of every model alone, for baselines chosen without test labels.
    model_stats: Mapping[str, Summary]
    # The same per task (a per-task static router is a baseline a tenant could configure).
    task_stats: Mapping[str, Mapping[str, Summary]]
    # The most accurate thresholds at each fraction of the strong model's cost (train).
    frontier: tuple[tuple[float, OperatingPoint], ...] = ()
    candidates: tuple[tuple[tuple[str, ...], Summary], ...] = ()

    def thresholds(self, point: str = "budget") -> tuple[float, ...]:
        return self.points[point].thresholds

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "tiers": list(self.tiers),
            "strong": self.strong,
            "budget_fraction": self.budget_fraction,
            "operating_points": {name: p.to_json() for name, p in self.points.items()},
            "model_stats": {m: s.__dict__ for m, s in self.model_stats.items()},
            "task_stats": {
                task: {m: s.__dict__ for m, s in stats.items()}
                for task, stats in self.task_stats.items()
            },
            "frontier": [{"budget_fraction": f, **p.to_json()} for f, p in self.frontier],
            "candidates": [
                {"tiers": list(chain), "train_at_budget": s.__dict__}
                for chain, s in self.candidates
            ],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> CascadeDesign:
        if raw.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file (format={raw.get('format')!r})")
        tiers = tuple(str(t) for t in raw["tiers"])
        points = {
            name: OperatingPoint(
                tuple(float(t) for t in point["thresholds"]), Summary(**point["train"])
            )
            for name, point in raw["operating_points"].items()
        }
        frontier = tuple(
            (
                float(p["budget_fraction"]),
                OperatingPoint(tuple(float(t) for t in p["thresholds"]), Summary(**p["train"])),
            )
            for p in raw.get("frontier", [])
        )
        every = [*points.values(), *(p for _, p in frontier)]
        if any(len(p.thresholds) != len(tiers) - 1 for p in every):
            raise ValueError("every operating point needs one threshold per tier but the last")
        stats = {str(m): Summary(**s) for m, s in raw.get("model_stats", {}).items()}
        by_task = {
            str(task): {str(m): Summary(**s) for m, s in models.items()}
            for task, models in raw.get("task_stats", {}).items()
        }
        return cls(
            tiers,
            str(raw["strong"]),
            float(raw["budget_fraction"]),
            points,
            stats,
            by_task,
            frontier,
        )

    @classmethod
    def load(cls, path: Path = DEFAULT_DESIGN) -> CascadeDesign:
        return cls.from_json(json.loads(path.read_text()))


def candidate_chains(order: Sequence[str], strong: str, cheap: Sequence[str]) -> list[list[str]]:
    ranked = [m for m in order if m in cheap]
    chains = [[a, strong] for a in ranked]
    chains += [[a, b, strong] for i, a in enumerate(ranked) for b in ranked[i + 1 :]]
    return chains


def design_cascade(
    cases: Sequence[Case], order: Sequence[str], score: BatchScore, budget_fraction: float
) -> CascadeDesign:
    """Searches chains and thresholds on training cases; `score` must be out-of-fold."""
    everyone = complete(cases, order)
    index = {id(c): i for i, c in enumerate(cases)}

    def batch(requests: Sequence[tuple[int, str, tuple[str, ...]]]) -> Any:
        # score_table numbers the subset; map back to the indices `score` knows.
        return score([(index[id(everyone[i])], m, e) for i, m, e in requests])

    stats, task_stats = model_stats(everyone, order)
    tasks = sorted(task_stats)
    strong = max(order, key=lambda m: (stats[m].accuracy, -order.index(m)))
    budget = budget_fraction * stats[strong].cost_per_1k / 1000
    cheap = [m for m in order if m != strong and stats[m].cost_per_1k / 1000 < budget]

    def caps(fraction: float) -> list[CostCap]:
        """Each task held to `fraction` of the strong model's cost on that task."""
        return [
            (
                np.asarray([c.item.task == task for c in everyone]),
                fraction * task_stats[task][strong].cost_per_1k / 1000,
            )
            for task in tasks
        ]

    results = []
    for chain in candidate_chains(order, strong, cheap):
        table = score_table(everyone, chain, batch)
        fitted = fit_thresholds(table, cost_caps=caps(budget_fraction))
        if fitted is not None:
            results.append((chain, table, fitted))
    results.sort(key=lambda r: (-r[2][1].accuracy, r[2][1].cost_per_1k))
    chain, table, (thresholds, at_budget) = results[0]
    points = {"budget": OperatingPoint(thresholds, at_budget)}
    parity = fit_thresholds(table, min_accuracy=stats[strong].accuracy)
    if parity is not None:
        points["parity"] = OperatingPoint(*parity)
    frontier = [
        (fraction, OperatingPoint(*point))
        for fraction in FRONTIER_FRACTIONS
        if (point := fit_thresholds(table, cost_caps=caps(fraction))) is not None
    ]
    return CascadeDesign(
        tuple(chain),
        strong,
        budget_fraction,
        points,
        stats,
        task_stats,
        tuple(frontier),
        tuple((tuple(c), point[1]) for c, _, point in results[:8]),
    )


def model_stats(
    cases: Sequence[Case], models: Sequence[str]
) -> tuple[dict[str, Summary], dict[str, dict[str, Summary]]]:
    """Each model alone: accuracy and cost overall and per task."""
    overall = {m: summarise([single(c, m, "") for c in cases]) for m in models}
    per_task = {
        task: {
            m: summarise([single(c, m, "") for c in cases if c.item.task == task]) for m in models
        }
        for task in sorted({c.item.task for c in cases})
    }
    return overall, per_task


def fit_start_prior(
    cases: Sequence[Case], design: CascadeDesign, score: BatchScore, components: int
) -> TierPrior:
    """Per tier, P(the tier's answer passes its threshold | prompt), from out-of-fold scores.

    Every training prompt is labelled as if the tier were tried after all earlier tiers, which
    is what the online memory later sees for prompts that start at the first tier.
    """
    everyone = complete(cases, design.tiers)
    index = {id(c): i for i, c in enumerate(cases)}
    vectors = np.stack([c.prompt_vector for c in everyone])
    center, basis = principal_directions(vectors, components)
    projected = (vectors - center) @ basis
    standardise = Standardiser.fit(projected)
    tiers = len(design.tiers)
    weights = np.zeros((tiers, components))
    bias = np.zeros(tiers)
    thresholds = design.thresholds()
    for k in range(tiers - 1):
        requests = [(index[id(c)], design.tiers[k], tuple(design.tiers[:k])) for c in everyone]
        labels = (score(requests) >= thresholds[k]).astype(np.int64)
        w, b = fit_logistic(standardise(projected), labels, l2=1.0)
        # Fold the standardisation into the weights so run time needs only the projection.
        weights[k] = w / standardise.scale
        bias[k] = b - float((w / standardise.scale) @ standardise.mean)
    bias[-1] = 30.0  # the last tier always answers
    return TierPrior(
        center,
        basis,
        weights,
        bias,
        {"tiers": list(design.tiers), "thresholds": list(thresholds), "prompts": len(everyone)},
    )

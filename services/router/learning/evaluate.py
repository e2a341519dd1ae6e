"""Offline evaluation of routing policies on held-out cases, for the routing benchmark.

Labels are read here only to score the policies' chosen answers; no policy sees them (except
the oracle and the perfect-scorer rows, which are upper bounds and are labelled as such).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from services.router.learning.cascade_design import CascadeDesign
from services.router.learning.fit import auc
from services.router.learning.metrics import apgr
from services.router.learning.scorer import ScorerModel
from services.router.learning.simulate import (
    Accept,
    Case,
    Outcome,
    ScoreTable,
    Summary,
    feature_row,
    oracle,
    run_cascade,
    score_table,
    single,
    summarise,
    table_outcomes,
)
from services.router.learning.start_tier import StartTierPredictor, StartTierSettings, TierPrior

OVERALL = "overall"
SWEEP = tuple(float(t) for t in np.linspace(0.0, 1.0, 21))
BySplit = dict[str, Summary]


@dataclass(frozen=True)
class PolicyRow:
    name: str
    note: str
    results: BySplit


@dataclass(frozen=True)
class OfflineReport:
    rows: tuple[PolicyRow, ...]
    sweep: tuple[tuple[float, BySplit], ...]  # shared threshold -> results
    frontier: tuple[tuple[float, BySplit], ...]  # train budget fraction -> test results
    apgr_calls: Mapping[str, float]  # RouteLLM's x axis: share of strong-model calls
    apgr_cost: Mapping[str, float]  # x axis: cost as a share of always-strong
    scorer_auc: Mapping[str, float]  # per non-final tier, on test, answers seen in chain order


class OfflineEvaluator:
    def __init__(
        self,
        splits: Mapping[str, Sequence[Case]],
        design: CascadeDesign,
        scorer: ScorerModel,
        rule_gate: Accept,
        prior: TierPrior | None = None,
    ) -> None:
        self.splits = {name: list(cases) for name, cases in splits.items()}
        self.design = design
        self.scorer = scorer
        self.rule_gate = rule_gate
        self.prior = prior
        self._everyone = [c for cases in self.splits.values() for c in cases]
        self._memo: dict[tuple[int, str, tuple[str, ...]], float] = {}

    def by_split(self, outcomes: Sequence[Outcome]) -> BySplit:
        """Summaries per split and overall of outcomes listed in self._everyone's order."""
        results: BySplit = {}
        start = 0
        for name, cases in self.splits.items():
            results[name] = summarise(outcomes[start : start + len(cases)])
            start += len(cases)
        results[OVERALL] = summarise(outcomes)
        return results

    def policy(self, choose: Callable[[Case], Outcome]) -> BySplit:
        return self.by_split([choose(c) for c in self._everyone])

    def score(self, case: Case, model: str, earlier: tuple[str, ...]) -> float:
        key = (id(case), model, earlier)
        if key not in self._memo:
            row = feature_row(self.scorer, case, model, earlier)
            self._memo[key] = float(self.scorer.predict(row)[0])
        return self._memo[key]

    def learned_accept(self, thresholds: Sequence[float]) -> Accept:
        def accept(case: Case, position: int, model: str, earlier: tuple[str, ...]) -> bool:
            return self.score(case, model, earlier) >= thresholds[position]

        return accept

    def table(self) -> ScoreTable:
        def batch(requests: Sequence[tuple[int, str, tuple[str, ...]]]) -> np.ndarray:
            return np.asarray([self.score(self._everyone[i], m, e) for i, m, e in requests])

        return score_table(self._everyone, self.design.tiers, batch)

    def table_results(self, table: ScoreTable, thresholds: Sequence[float]) -> BySplit:
        correct, cost, strong = table_outcomes(table, thresholds)
        tiers = table.chain
        outcomes = [
            Outcome(bool(c), float(u), tiers[-1] if s else "", bool(s))
            for c, u, s in zip(correct, cost, strong, strict=True)
        ]
        return self.by_split(outcomes)

    def with_start_tier(self, thresholds: Sequence[float], seed: int = 0) -> BySplit:
        """The learned cascade entered at the predicted tier, learning online in arrival order.

        Arrival order interleaves the splits (by a hash of the sample id) like mixed traffic.
        Tier costs given to the predictor are the models' mean train costs.
        """
        tiers = self.design.tiers
        predictor = StartTierPredictor(
            len(tiers), StartTierSettings(), self.prior, random.Random(seed)
        )
        costs = [self.design.model_stats[m].cost_per_1k for m in tiers]
        arrival = sorted(
            range(len(self._everyone)),
            key=lambda i: hashlib.sha1(self._everyone[i].item.sample_id.encode()).hexdigest(),
        )
        outcomes: dict[int, Outcome] = {}
        for index in arrival:
            case = self._everyone[index]
            recorder = _Recorder(self.learned_accept(thresholds))
            start = predictor.choose(case.prompt_vector, costs)
            outcomes[index] = run_cascade(case, tiers, recorder, self.design.strong, start)
            predictor.observe(case.prompt_vector, recorder.tried)
        return self.by_split([outcomes[i] for i in range(len(self._everyone))])

    def scorer_aucs(self, table: ScoreTable) -> dict[str, float]:
        """AUC of each cheap tier's score against its answer's correctness, per split.

        Pooled AUC mostly measures how well the scorer tells tasks apart; the per-split
        figures say whether it can tell a right answer from a wrong one within a task.
        """
        aucs: dict[str, float] = {}
        start = 0
        slices = []
        for name, cases in self.splits.items():
            slices.append((name, slice(start, start + len(cases))))
            start += len(cases)
        slices.append((OVERALL, slice(0, start)))
        for k, model in enumerate(table.chain[:-1]):
            for name, rows in slices:
                called = table.available[rows, k]
                aucs[f"tier {k + 1} {_short(model)} / {name}"] = auc(
                    table.correct[rows, k][called], table.scores[rows, k][called]
                )
        return aucs

    def task_best(self, task: str) -> str:
        """Most accurate model on the task's train split within the cost budget."""
        stats = self.design.task_stats[task]
        budget = self.design.budget_fraction * stats[self.design.strong].cost_per_1k
        affordable = [m for m in stats if stats[m].cost_per_1k <= budget]
        return max(affordable, key=lambda m: (stats[m].accuracy, -stats[m].cost_per_1k))

    def baselines(self) -> list[PolicyRow]:
        design, strong = self.design, self.design.strong
        stats = design.model_stats
        budget = design.budget_fraction * stats[strong].cost_per_1k
        cheapest = min(stats, key=lambda m: stats[m].cost_per_1k)
        affordable = [m for m in stats if stats[m].cost_per_1k <= budget]
        best = max(affordable, key=lambda m: stats[m].accuracy)
        models = list(stats)
        seed_shape = (cheapest, best, strong) if best != cheapest else (cheapest, strong)
        return [
            PolicyRow(
                f"always {strong}", "baseline", self.policy(lambda c: single(c, strong, strong))
            ),
            PolicyRow(
                f"always cheapest ({cheapest})",
                "baseline; cheapest on train",
                self.policy(lambda c: single(c, cheapest, strong)),
            ),
            PolicyRow(
                f"best single model ({best})",
                f"most accurate on train within {design.budget_fraction:.0%} of {strong}'s cost",
                self.policy(lambda c: single(c, best, strong)),
            ),
            PolicyRow(
                "best single model per task",
                "per-task static routing: the best train model within budget for each task",
                self.policy(lambda c: single(c, self.task_best(c.item.task), strong)),
            ),
            PolicyRow(
                "heuristic cascade " + " > ".join(_short(m) for m in seed_shape),
                "seed shape: cheapest > mid > top, rule gates only",
                self.policy(lambda c: run_cascade(c, seed_shape, self.rule_gate, strong)),
            ),
            PolicyRow(
                "heuristic cascade " + " > ".join(_short(m) for m in design.tiers),
                "Sluice's tiers, rule gates only",
                self.policy(lambda c: run_cascade(c, design.tiers, self.rule_gate, strong)),
            ),
            PolicyRow(
                "oracle (cheapest correct model)",
                "upper bound, reads labels",
                self.policy(lambda c: oracle(c, models, strong)),
            ),
        ]

    def report(self) -> OfflineReport:
        design, strong = self.design, self.design.strong
        table = self.table()
        rows = self.baselines()
        rows.append(
            PolicyRow(
                "perfect scorer on Sluice's tiers",
                "upper bound for any gate on these tiers, reads labels",
                self.policy(
                    lambda c: run_cascade(
                        c,
                        design.tiers,
                        lambda cc, _, m, __: bool(cc.item.answers[m].correct),
                        strong,
                    )
                ),
            )
        )
        for point in design.points:
            thresholds = design.thresholds(point)
            label = ", ".join(f"{t:.3f}" for t in thresholds)
            rows.append(
                PolicyRow(
                    f"Sluice learned cascade @{point}",
                    f"thresholds {label} fitted on train",
                    self.table_results(table, thresholds),
                )
            )
        rows.append(
            PolicyRow(
                "Sluice learned cascade @budget + start tier",
                "online kNN start tier, seeded by the train prior, eps=0.05",
                self.with_start_tier(design.thresholds()),
            )
        )
        sweep = tuple((t, self.table_results(table, [t] * (len(design.tiers) - 1))) for t in SWEEP)
        frontier = tuple(
            (fraction, self.table_results(table, point.thresholds))
            for fraction, point in design.frontier
        )
        calls, cost = self.areas(sweep)
        return OfflineReport(tuple(rows), sweep, frontier, calls, cost, self.scorer_aucs(table))

    def areas(
        self, sweep: Sequence[tuple[float, BySplit]]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """APGR of the threshold sweep per split; weak = first tier alone, strong = top model."""
        weak_model, strong = self.design.tiers[0], self.design.strong
        weak = self.policy(lambda c: single(c, weak_model, strong))
        top = self.policy(lambda c: single(c, strong, strong))
        calls: dict[str, float] = {}
        cost: dict[str, float] = {}
        for split in [*self.splits, OVERALL]:
            w, s = weak[split].accuracy, top[split].accuracy
            points = [r[split] for _, r in sweep]
            calls[split] = apgr([(p.strong_fraction, p.accuracy) for p in points], w, s)
            cost[split] = apgr(
                [(p.cost_per_1k / top[split].cost_per_1k, p.accuracy) for p in points], w, s
            )
        return calls, cost


class _Recorder:
    """Wraps a gate and remembers (tier, passed) for every tier it judged."""

    def __init__(self, accept: Accept) -> None:
        self._accept = accept
        self.tried: list[tuple[int, bool]] = []

    def __call__(self, case: Case, position: int, model: str, earlier: tuple[str, ...]) -> bool:
        passed = self._accept(case, position, model, earlier)
        self.tried.append((position, passed))
        return passed


def _short(model: str) -> str:
    return model.rsplit("/", 1)[-1]

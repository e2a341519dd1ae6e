"""Training, cascade design and the offline report end to end, on a synthetic task."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from services.router.learning.cascade_design import CascadeDesign, design_cascade, fit_start_prior
from services.router.learning.evaluate import OVERALL, OfflineEvaluator
from services.router.learning.report import SLUICE, format_report, summary
from services.router.learning.scorer import AnswerScorer
from services.router.learning.simulate import Case
from services.router.learning.train import TrainSettings, cost_order, train_scorers
from tests.unit.router.learning.fixtures import HashEmbedder, cases, item

# cheap is right 60% of the time, mid 80%, big 95%; costs 1 / 2 / 20.
SKILL = {"cheap": (0.6, 1.0), "mid": (0.8, 2.0), "big": (0.95, 20.0)}


def synthetic(n: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        truth = rng.choice("ABCD")
        prompt = f"Question number {i} about topic {rng.randint(0, 9)}?\n" + "\n".join(
            f"{letter}) option {letter.lower()}{i}" for letter in "ABCD"
        )
        answers = {}
        for model, (skill, cost) in SKILL.items():
            right = rng.random() < skill
            letter = truth if right else rng.choice([x for x in "ABCD" if x != truth])
            answers[model] = (letter, right, cost / 1000)
        items.append(item(f"s{seed}.{i}", prompt, answers))
    return cases(items)


@pytest.fixture(scope="module")
def trained() -> tuple[list[Case], CascadeDesign, object, object]:
    train = synthetic(120, seed=1)
    models = sorted(SKILL)
    order = cost_order(train, models)
    settings = TrainSettings(components=2, folds=3)
    fitted, metrics = train_scorers(train, models, order, settings)
    assert 0.5 < metrics["oof_auc"] <= 1.0
    design = design_cascade(train, order, fitted.out_of_fold, budget_fraction=0.3)
    prior = fit_start_prior(train, design, fitted.out_of_fold, components=2)
    return train, design, fitted, prior


def test_the_cascade_ends_at_the_strongest_model_within_budget(trained) -> None:
    _, design, _, _ = trained
    assert order_ok(design.tiers)
    assert design.strong == "big" and design.tiers[-1] == "big"
    budget = design.points["budget"]
    assert len(budget.thresholds) == len(design.tiers) - 1
    assert budget.train.cost_per_1k <= 0.3 * design.model_stats["big"].cost_per_1k + 1e-9
    assert CascadeDesign.from_json(json.loads(json.dumps(design.to_json()))).tiers == design.tiers


def order_ok(tiers: tuple[str, ...]) -> bool:
    costs = [SKILL[m][1] for m in tiers]
    return costs == sorted(costs)


def test_the_learned_scorer_values_agreement(trained) -> None:
    _, _, fitted, _ = trained
    scorer = AnswerScorer(fitted.full, HashEmbedder())
    prompt = "Question number 999 about topic 3?\nA) a\nB) b\nC) c\nD) d"
    agreed = scorer.score(prompt, "C", "mid", [("cheap", "C")])
    disputed = scorer.score(prompt, "C", "mid", [("cheap", "B")])
    assert agreed > disputed


def test_the_offline_report_covers_every_policy_and_the_curve(trained) -> None:
    _, design, fitted, prior = trained
    test = synthetic(60, seed=2)
    evaluator = OfflineEvaluator({"arc": test}, design, fitted.full, lambda *_: True, prior)
    report = evaluator.report()
    names = [row.name for row in report.rows]
    assert names[0] == "always big"
    assert SLUICE in names and "oracle (cheapest correct model)" in names
    assert all(row.results[OVERALL].n == 60 for row in report.rows)
    assert len(report.sweep) == 21 and not math.isnan(report.apgr_calls[OVERALL])
    text = format_report(report, [], ["arc"])
    assert "OFFLINE" in text and "APGR" in text
    line = json.loads(json.dumps(summary(report, [], None)))
    assert {"accuracy_vs_gpt4", "cost_ratio_vs_gpt4", "splits"} <= set(line)
    assert line["source"] == "offline-simulation" and "arc" in line["splits"]


def test_the_start_prior_has_one_probability_per_tier(trained) -> None:
    train, design, _, prior = trained
    probabilities = prior.probabilities(train[0].prompt_vector)
    assert probabilities.shape == (len(design.tiers),)
    assert probabilities[-1] > 0.99 and np.all(probabilities > 0)

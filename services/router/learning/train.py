"""Retrains the shipped model files from RouterBench `*_train` splits (never `*_test`).

    python -m services.router.learning.train --data ../shared/data/routerbench-subset

Writes, under services/router/learning/models/:
- answer_scorer.json: the FrugalGPT-style scorer (crossed-feature logistic regression);
- cascade.json: the tiers chosen from the 11 models and their score thresholds;
- start_tier.json: the offline prior of the start-tier predictor.

Thresholds are fitted on out-of-fold scores (5 folds grouped by prompt), so they are not tuned
on answers the scorer has memorised.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.router.learning.cascade_design import design_cascade, fit_start_prior
from services.router.learning.data import load_split, models_of
from services.router.learning.embedding import MemoEmbedder, MiniLm
from services.router.learning.fit import (
    Standardiser,
    auc,
    fit_logistic,
    log_loss,
    principal_directions,
)
from services.router.learning.scorer import MODELS_DIR, Dense, Projection, ScorerModel
from services.router.learning.simulate import Case, feature_row, prepare

Array = NDArray[np.float64]
Request = tuple[int, str, tuple[str, ...]]
DEFAULT_CACHE = Path.home() / ".cache" / "sluice" / "minilm-routerbench.npz"


@dataclass(frozen=True)
class TrainSettings:
    components: int = 8  # principal components kept of the prompt and answer embeddings
    l2: float = 1.0
    folds: int = 5
    seed: int = 0
    # Sizes of the earlier-answer sets each training answer is shown with: the scorer must
    # work at the first tier (none) and after one or two cheaper tiers.
    earlier_sizes: tuple[int, ...] = (0, 1, 2)
    budget_fraction: float = 0.15


class RowBook:
    """Feature rows by (case, model, earlier models), computed once and shared by all folds."""

    def __init__(self, skeleton: ScorerModel, cases: Sequence[Case]) -> None:
        self._skeleton = skeleton
        self._cases = cases
        self._rows: dict[Request, Array] = {}

    def rows(self, requests: Sequence[Request]) -> Array:
        for request in requests:
            if request not in self._rows:
                case_index, model, earlier = request
                self._rows[request] = feature_row(
                    self._skeleton, self._cases[case_index], model, earlier
                )
        return np.stack([self._rows[r] for r in requests])


def cost_order(cases: Sequence[Case], models: Sequence[str]) -> tuple[str, ...]:
    """Models from cheapest to dearest by mean recorded cost."""

    def mean_cost(model: str) -> float:
        costs = [c.item.answers[model].cost_usd for c in cases if model in c.item.answers]
        return float(np.mean(costs))

    return tuple(sorted(models, key=mean_cost))


def skeleton(cases: Sequence[Case], models: Sequence[str], components: int) -> ScorerModel:
    """A scorer with its projections fitted (label-free) and placeholder weights."""
    prompt = Projection(
        *principal_directions(np.stack([c.prompt_vector for c in cases]), components)
    )
    answers = np.stack([v for c in cases for v in c.answer_vectors.values()])
    answer = Projection(*principal_directions(answers, components))
    width = len(
        ScorerModel(tuple(models), prompt, answer, np.zeros(0), np.ones(0), ()).feature_names
    )
    return ScorerModel(
        tuple(models),
        prompt,
        answer,
        np.zeros(width),
        np.ones(width),
        (Dense(np.zeros((width, 1)), np.zeros(1), relu=False),),
    )


def training_requests(
    cases: Sequence[Case], order: Sequence[str], settings: TrainSettings
) -> tuple[list[Request], NDArray[np.int64]]:
    """Every labelled answer, each shown with random sets of cheaper models' answers."""
    rng = random.Random(settings.seed)
    requests: list[Request] = []
    labels: list[int] = []
    for index, case in enumerate(cases):
        for model, answer in case.item.answers.items():
            if answer.correct is None:
                continue
            cheaper = [m for m in order[: order.index(model)] if m in case.item.answers]
            seen: set[tuple[str, ...]] = set()
            for size in settings.earlier_sizes:
                if size > len(cheaper):
                    continue
                earlier = tuple(sorted(rng.sample(cheaper, size), key=order.index))
                if earlier not in seen:
                    seen.add(earlier)
                    requests.append((index, model, earlier))
                    labels.append(int(answer.correct))
    return requests, np.asarray(labels, dtype=np.int64)


def fit_scorer(
    base: ScorerModel, rows: Array, labels: NDArray[np.int64], l2: float, metadata: dict[str, Any]
) -> ScorerModel:
    standardise = Standardiser.fit(rows)
    weights, bias = fit_logistic(standardise(rows), labels, l2)
    return ScorerModel(
        base.models,
        base.prompt,
        base.answer,
        standardise.mean,
        standardise.scale,
        (Dense(weights[:, None], np.asarray([bias]), relu=False),),
        metadata,
    )


def prompt_folds(cases: Sequence[Case], folds: int, seed: int) -> NDArray[np.int64]:
    """Fold of each case; duplicate prompts share a fold so no answer leaks across folds."""
    prompts = sorted({" ".join(c.item.prompt.split()) for c in cases})
    random.Random(seed).shuffle(prompts)
    fold_of = {p: i % folds for i, p in enumerate(prompts)}
    return np.asarray([fold_of[" ".join(c.item.prompt.split())] for c in cases], dtype=np.int64)


@dataclass(frozen=True)
class FittedScorers:
    full: ScorerModel
    by_fold: list[ScorerModel]
    folds: NDArray[np.int64]
    book: RowBook

    def out_of_fold(self, requests: Sequence[Request]) -> Array:
        """Each case scored by the scorer that did not see it in training."""
        scores = np.zeros(len(requests))
        fold_of_request = self.folds[[r[0] for r in requests]]
        rows = self.book.rows(requests)
        for fold, scorer in enumerate(self.by_fold):
            mask = fold_of_request == fold
            if mask.any():
                scores[mask] = scorer.predict(rows[mask])
        return scores


def train_scorers(
    cases: Sequence[Case], models: Sequence[str], order: Sequence[str], settings: TrainSettings
) -> tuple[FittedScorers, dict[str, float]]:
    base = skeleton(cases, models, settings.components)
    book = RowBook(base, cases)
    requests, labels = training_requests(cases, order, settings)
    rows = book.rows(requests)
    folds = prompt_folds(cases, settings.folds, settings.seed)
    row_folds = folds[[r[0] for r in requests]]
    by_fold = [
        fit_scorer(base, rows[row_folds != f], labels[row_folds != f], settings.l2, {})
        for f in range(settings.folds)
    ]
    full = fit_scorer(base, rows, labels, settings.l2, {})
    fitted = FittedScorers(full, by_fold, folds, book)
    oof = fitted.out_of_fold(requests)
    metrics = {
        "oof_auc": round(auc(labels, oof), 4),
        "oof_log_loss": round(log_loss(labels, oof), 4),
        "rows": float(len(labels)),
    }
    return fitted, metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="routerbench-subset directory")
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    parser.add_argument("--embedding-cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    settings = TrainSettings()
    items = [item for rows in load_split(args.data, "train").values() for item in rows]
    models = sorted(models_of({"train": items}))
    embedder = MemoEmbedder(MiniLm(threads=2), args.embedding_cache)
    cases = prepare(items, embedder)
    embedder.save()
    order = cost_order(cases, models)
    fitted, metrics = train_scorers(cases, models, order, settings)
    print(f"scorer: {json.dumps(metrics)}", file=sys.stderr)
    design = design_cascade(cases, order, fitted.out_of_fold, settings.budget_fraction)
    prior = fit_start_prior(cases, design, fitted.out_of_fold, settings.components)
    args.out.mkdir(parents=True, exist_ok=True)
    scorer = ScorerModel(
        fitted.full.models,
        fitted.full.prompt,
        fitted.full.answer,
        fitted.full.mean,
        fitted.full.scale,
        fitted.full.layers,
        {
            "trained_on": "RouterBench *_train (ARC-Challenge, MBPP, WinoGrande)",
            "embedding": "all-MiniLM-L6-v2",
            "model": "L2 logistic regression, crossed features",
            **settings.__dict__,
            **metrics,
        },
    )
    scorer.save(args.out / "answer_scorer.json")
    (args.out / "cascade.json").write_text(json.dumps(design.to_json(), indent=1) + "\n")
    prior.save(args.out / "start_tier.json")
    print(json.dumps(design.to_json()["operating_points"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

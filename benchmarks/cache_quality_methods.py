"""The cache-quality methods in-process: threshold sweeps, training, operating points, the
per-namespace table and the ablation. Everything is fitted on the fit half and every figure
returned is on the held-back half (SweepPoint.held), except where a name says "fit".
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from benchmarks.cache_quality_data import Workloads
from benchmarks.common import Results, markdown_table, percent, raise_threshold
from services.cache.verifiers.features import CHECKS
from services.cache.verifiers.learned import LearnedVerifier, PairScorer
from services.cache.verifiers.pair_model import PairModel
from services.cache.verifiers.replay import (
    HEADLINE_DATASETS,
    Score,
    ScoreThreshold,
    Space,
    SweepPoint,
    Vectors,
    feedback_observer,
    labelled_pairs,
    precision_point,
    recall_point,
    score,
    simulate,
    sweep,
)
from services.cache.verifiers.rules import RuleVerifier
from services.cache.verifiers.train import LabelledPair, train_model
from services.cache.verifiers.train_pair import DEFAULT_UNITS, train_pair_model
from services.cache.verify import AcceptAll, HitVerifier, Pair

T = TypeVar("T")
Row = tuple[str, str, dict[str, Score]]
Sweeps = dict[str, tuple[list[SweepPoint], str]]

TARGET_WRONG = 0.01  # the goal: at most 1% of hits wrong...
TARGET_HITS = 0.60  # ...while at least 60% of true paraphrases hit
FALLBACK_WRONG = (0.02, 0.03, 0.05)  # when no threshold certifies the goal on the fit half
RULES_ALONE_AT = 0.90  # the service's default threshold, so each check's effect shows alone
COSINES = [round(0.70 + i / 100, 2) for i in range(30)]  # 0.70 .. 0.99
# The lowest cosine floor of the sweep behind `hit_rate_at_2pct_wrong` (cache_quality.py).
SWEEP_FLOOR = COSINES[0]
PROBABILITIES = [round(0.05 * i, 2) for i in range(1, 20)] + [0.97, 0.98, 0.99, 0.995]
FEATURE_STAGES = {
    "cosine only": ("cosine", "cosine_gap"),
    "+ overlap": (
        "cosine", "cosine_gap", "jaccard", "containment_min", "containment_max",
        "only_in_one", "char_jaccard", "length_ratio", "short_length",
    ),
}  # fmt: skip


def pooled_only(items: Mapping[str, T]) -> dict[str, T]:
    """The datasets pooled into "overall" (QQP, BANKING77, CLINC150), without the others."""
    return {name: items[name] for name in HEADLINE_DATASETS}


def cosine_points(results: Results, low: float) -> list[SweepPoint]:
    """One run at cosine floor `low`, its floor raised to each of COSINES above it. Exact for
    a verifier whose verdict on a pair depends on that pair alone: candidates come best first
    and the first accepted is served, so a higher floor only turns the hits below it into
    misses, as a run at that floor would (rules: 100.00% the same answers as the run at 0.90).
    Guarded gave 99.97% the same answers as its run at 0.80; its cross-encoder scores a
    lookup's candidates in one padded batch, which a lower floor changes (the likely cause of
    the rest, not checked)."""
    points = []
    for floor in sorted({low, *(c for c in COSINES if c > low)}):
        raised = raise_threshold(results, floor)
        points.append(SweepPoint(floor, score(raised, fit=True), score(raised)))
    return points


def learned_sweep(workloads: Workloads, vectors: Vectors, model: PairScorer) -> list[SweepPoint]:
    memo: dict[tuple[str, str], float] = {}
    verifier = LearnedVerifier(model)

    def scorer(pair: Pair) -> float:
        return -1.0 if verifier.vetoed(pair) else verifier.score(pair)

    pre = model.min_similarity
    return sweep(
        workloads, vectors, PROBABILITIES, lambda t: (ScoreThreshold(scorer, t, memo), pre)
    )


def fit_pairs(
    workloads: Workloads, vectors: Vectors, floor: float, extra: Sequence[LabelledPair] = ()
) -> list[LabelledPair]:
    """Every fit-half candidate at or above the pre-filter, labelled (replay.labelled_pairs),
    plus the training-only `extra` pairs (extra_pairs) at or above it."""
    own = labelled_pairs(workloads, vectors, floor)
    return own + [p for p in extra if p.pair.similarity >= floor]


def extra_pairs(spaces: Sequence[Space], vectors: Vectors, floor: float) -> list[LabelledPair]:
    """The candidate pairs of training-only namespaces (cache_quality_data.extra_qqp), found
    by the same replayed loop as the fit half's. They are never evaluated; in the inner folds
    they go by the query's hash like every other pair (inner_fold)."""
    return labelled_pairs({"extra": spaces}, vectors, floor)


def model_units(model: PairModel) -> int:
    return len(model.hidden.bias) if model.hidden is not None else 0


def _fit_rank(points: list[SweepPoint]) -> tuple[int, float]:
    """How good a sweep is on the fit half: right hits within the target, then the wrong
    share at the 60%-hit point (lower is better)."""
    best = precision_point(points, TARGET_WRONG)
    recall = recall_point(points, TARGET_HITS)
    right = best.fit["overall"].served_right if best else 0
    fit = recall.fit["overall"] if recall else None
    return right, -(fit.wrong_hits / max(1, fit.hits)) if fit else -1.0


def inner_fold(text: str) -> int:
    """0 or 1: which half of the fit half a query (and every candidate pair of it) is in."""
    return int(hashlib.sha1(("inner:" + text).encode("utf-8")).hexdigest(), 16) % 2


def cross_fitted_sweep(
    workloads: Workloads,
    vectors: Vectors,
    pairs: list[LabelledPair],
    vetoes: tuple[str, ...],
    units: int = DEFAULT_UNITS,
) -> list[SweepPoint]:
    """The pair model's sweep with every fit lookup scored by a model that never saw it.

    A network scores its own training pairs too well (on the fit half, p >= 0.95 served 0.5%
    wrong where held-back lookups got 5.4%), so thresholds chosen on its own scores are too
    low. Two models, each trained on one inner half of the fit pairs, score the other half;
    the held-back half is scored by the model of the query's inner half, which never saw it
    either. Only the fit figures of these points are used, to choose."""
    floor = min(p.pair.similarity for p in pairs)
    models = [
        replace(
            train_pair_model(
                [p for p in pairs if inner_fold(p.pair.query) == k],
                min_similarity=floor,
                units=units,
            ),
            vetoes=vetoes,
        )
        for k in (0, 1)
    ]
    judges = [LearnedVerifier(m) for m in models]
    memo: dict[tuple[str, str], float] = {}

    def scorer(pair: Pair) -> float:
        judge = judges[1 - inner_fold(pair.query)]
        return -1.0 if judge.vetoed(pair) else judge.score(pair)

    pre = models[0].min_similarity
    return sweep(
        workloads, vectors, PROBABILITIES, lambda t: (ScoreThreshold(scorer, t, memo), pre)
    )


def pair_sweep(
    workloads: Workloads, vectors: Vectors, model: PairModel, extra: Sequence[LabelledPair] = ()
) -> list[SweepPoint]:
    """A pair model's sweep: fit figures cross-fitted (to choose by; inner models of the
    model's own size, on the fit pairs plus `extra`), held-back figures of `model` itself
    (what it serves at that threshold)."""
    pairs = fit_pairs(workloads, vectors, model.min_similarity, extra)
    cross = cross_fitted_sweep(workloads, vectors, pairs, model.vetoes, model_units(model))
    own = learned_sweep(workloads, vectors, model)
    return [SweepPoint(c.param, c.fit, o.held) for c, o in zip(cross, own, strict=True)]


def strictest_point(points: list[SweepPoint]) -> tuple[SweepPoint | None, float]:
    """The most hits within the strictest wrong-answer rate the fit half can certify: 1% (the
    goal), else the first of FALLBACK_WRONG that some threshold meets. A threshold that serves
    nothing would certify 0% and be useless, so the ladder climbs instead."""
    for target in (TARGET_WRONG, *FALLBACK_WRONG):
        point = precision_point(points, target)
        if point is not None:
            return point, target
    return None, 0.0


def train(
    workloads: Workloads,
    vectors: Vectors,
    args: argparse.Namespace,
    extra: Sequence[LabelledPair] = (),
) -> PairModel:
    """Fits the pair model on the fit half's candidate pairs plus the training-only `extra`
    pairs, with args.units hidden units. Whether the check vetoes help and the threshold with
    the most hits at <= 1% wrong are chosen on cross-fitted scores of the fit half's lookups
    (cross_fitted_sweep)."""
    pairs = fit_pairs(workloads, vectors, args.min_similarity, extra)
    units = args.units
    info = {
        "data": sorted(workloads),
        "extra_qqp_rows": args.extra_qqp_pairs,
        "extra_pairs": sum(p.pair.similarity >= args.min_similarity for p in extra),
        "split": "sha1(text) % 10 < 5 is the fit half; only it is used",
        "threshold": "most fit-half hits within the strictest of 1/2/3/5% wrong that some "
        "threshold meets, on cross-fitted scores (2 inner folds)",
        "command": "python -m benchmarks.cache_quality --train "
        f"--extra-qqp-pairs {args.extra_qqp_pairs} --units {units}",
    }
    sweeps = {
        veto: cross_fitted_sweep(workloads, vectors, pairs, veto, units) for veto in ((), CHECKS)
    }
    ranked = {veto: _fit_rank(points) for veto, points in sweeps.items()}
    vetoes = max(ranked, key=lambda v: ranked[v])
    print(f"vetoes, cross-fitted on the fit half (right hits at <= 1% wrong, -wrong at 60% "
          f"hit): {ranked}", file=sys.stderr)  # fmt: skip
    for step in sweeps[vetoes]:
        fit = step.fit["overall"]
        hit, wrong = percent(fit.served_right, fit.should_hit), percent(fit.wrong_hits, fit.hits)
        print(f"  cross-fitted fit lookups, p >= {step.param}: {hit} hit, {wrong} wrong",
              file=sys.stderr)  # fmt: skip
    point, met = strictest_point(sweeps[vetoes])
    info["threshold_target"] = f"<= {met:.0%} wrong on cross-fitted fit lookups"
    model = train_pair_model(
        pairs, min_similarity=args.min_similarity, units=units, trained_on=info
    )
    model = replace(model, vetoes=vetoes, threshold=point.param if point else 1.0)
    model.save(Path(args.model))
    print(f"trained on {len(pairs)} fit pairs, vetoes {list(vetoes)}, threshold "
          f"{model.threshold} -> {args.model}", file=sys.stderr)  # fmt: skip
    return model


def text_model(workloads: Workloads, vectors: Vectors, floor: float) -> PairScorer:
    """The earlier learned model: logistic over the text features only, with the vetoes."""
    model = train_model(fit_pairs(workloads, vectors, floor), min_similarity=floor)
    return replace(model, vetoes=CHECKS)


def method_sweeps(
    workloads: Workloads, vectors: Vectors, model: PairModel, extra: Sequence[LabelledPair] = ()
) -> Sweeps:
    """name -> (sweep points, what the swept parameter is). `extra` trains only the pair
    model's cross-fitting models; the text-feature model keeps the benchmark's own pairs."""
    text = text_model(workloads, vectors, model.min_similarity)
    return {
        "bare cosine": (sweep(workloads, vectors, COSINES, lambda t: (AcceptAll(), t)), "cos"),
        "rules": (sweep(workloads, vectors, COSINES, lambda t: (RuleVerifier(), t)), "cos"),
        "learned, text features": (learned_sweep(workloads, vectors, text), "p"),
        "learned, pair model": (pair_sweep(workloads, vectors, model, extra), "p"),
    }


def operating_points(
    workloads: Workloads, vectors: Vectors, model: PairScorer, sweeps: Sweeps
) -> list[Row]:
    """Each method at the threshold the fit half picks for each side of the goal."""
    rows: list[Row] = []
    for goal in (f"<= {TARGET_WRONG:.0%} wrong on fit", f">= {TARGET_HITS:.0%} hit on fit"):
        for name, (points, unit) in sweeps.items():
            point = (
                precision_point(points, TARGET_WRONG)
                if goal.startswith("<=")
                else recall_point(points, TARGET_HITS)
            )
            label = f"{name}, {goal}"
            if point is None:
                rows.append((f"{label}: no threshold qualifies", "in-process", {}))
            else:
                rows.append((f"{label} ({unit} >= {point.param})", "in-process", point.held))
    adaptive = LearnedVerifier(model)
    outcomes = {
        n: simulate(s, vectors, adaptive, model.min_similarity, observe=feedback_observer(adaptive))
        for n, s in workloads.items()
    }
    rows.append((f"pair model + per-namespace feedback (p >= {model.threshold} until calibrated)",
                 "in-process", score(outcomes)))  # fmt: skip
    return rows


def per_namespace_table(sweeps: Sweeps) -> str:
    """Each dataset's own threshold for <= 1% wrong, fitted on its fit half: what per-namespace
    calibration can reach at best, since each dataset is one kind of namespace."""
    rows = []
    for name, (points, unit) in sweeps.items():
        cells = [name]
        for dataset in (*HEADLINE_DATASETS, "mock"):
            point = precision_point(points, TARGET_WRONG, on=dataset)
            if point is None:
                cells.append("none qualifies")
                continue
            held = point.held[dataset]
            cells.append(
                f"{percent(held.served_right, held.should_hit)} hit, "
                f"{percent(held.wrong_hits, held.hits)} wrong ({unit} >= {point.param})"
            )
        rows.append(cells)
    return markdown_table(["method", *HEADLINE_DATASETS, "mock"], rows)


def ablation(
    workloads: Workloads,
    vectors: Vectors,
    model: PairModel,
    shipped: list[SweepPoint],
    extra: Sequence[LabelledPair] = (),
) -> list[Row]:
    """What each part contributes: each check alone, then the learned models grown in stages.
    `shipped` is the shipped model's pair_sweep (already computed for the results table);
    the linear pair model trains on the same pairs as it (with `extra`)."""
    at = RULES_ALONE_AT

    def run(verifier: HitVerifier, threshold: float) -> dict[str, Score]:
        return score({n: simulate(s, vectors, verifier, threshold) for n, s in workloads.items()})

    rows: list[Row] = [(f"bare cosine >= {at}", "in-process", run(AcceptAll(), at))]
    rows += [
        (f"cosine >= {at} + {c} check", "in-process", run(RuleVerifier([c]), at)) for c in CHECKS
    ]
    rows.append((f"cosine >= {at} + all checks", "in-process", run(RuleVerifier(), at)))
    floor = model.min_similarity
    pairs = fit_pairs(workloads, vectors, floor)
    stages: dict[str, PairScorer] = {
        name: train_model(pairs, min_similarity=floor, features=features)
        for name, features in FEATURE_STAGES.items()
    }
    text = train_model(pairs, min_similarity=floor)
    stages["+ mismatch flags"] = text
    stages["+ mismatch flags + vetoes (session 1)"] = replace(text, vetoes=CHECKS)
    with_extra = fit_pairs(workloads, vectors, floor, extra)
    linear = train_pair_model(with_extra, min_similarity=floor, units=0)
    linear = replace(linear, vetoes=model.vetoes)
    sweeps = {name: learned_sweep(workloads, vectors, staged) for name, staged in stages.items()}
    sweeps["pair model, linear (no hidden units)"] = pair_sweep(workloads, vectors, linear, extra)
    sweeps[f"pair model, {model_units(model)} hidden units (shipped)"] = shipped
    for name, points in sweeps.items():
        for goal, point in (
            ("<= 1% wrong", precision_point(points)),
            (">= 60% hit", recall_point(points)),
        ):
            if point is not None:
                label = f"learned, {name}, {goal} on fit (p >= {point.param})"
                rows.append((label, "in-process", point.held))
    return rows

"""Fits the learned verifier's logistic model (numpy only, deterministic).

The benchmark builds the labelled pairs (`python -m benchmarks.cache_quality --train`): every
(query, stored question) candidate at or above the cosine pre-filter on the fit split, labelled
by whether the stored answer is the right one. This module turns them into a LogisticModel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.cache.verifiers.features import FEATURES, pair_features
from services.cache.verifiers.learned import LogisticModel
from services.cache.verifiers.signals_cache import SignalsCache
from services.cache.verify import Pair

Matrix = NDArray[np.float64]
# Ridge penalty on the standardised coefficients: the features are correlated (jaccard,
# containment, char overlap), and a little shrinkage keeps the weights stable between fits.
DEFAULT_L2 = 1.0


@dataclass(frozen=True)
class LabelledPair:
    pair: Pair
    correct: bool


def feature_matrix(pairs: Sequence[LabelledPair], features: Sequence[str] = FEATURES) -> Matrix:
    signals = SignalsCache(size=1 << 16)
    rows = []
    for pair in pairs:
        values = pair_features(
            signals(pair.pair.query), signals(pair.pair.candidate), pair.pair.similarity
        )
        rows.append([values[name] for name in features])
    return np.asarray(rows, dtype=np.float64).reshape(len(pairs), len(features))


def fit_logistic(
    x: Matrix, y: NDArray[np.float64], l2: float = DEFAULT_L2, iterations: int = 50
) -> tuple[Matrix, Matrix, Matrix, float]:
    """Newton's method on the L2-penalised log-loss; returns (mean, scale, coef, intercept)."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0  # a constant feature gets no weight, not a division by zero
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    weights = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[0] = 0.0  # the intercept is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ weights, -30, 30)))
        gradient = z.T @ (p - y) + penalty * weights
        hessian = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return mean, scale, weights[1:], float(weights[0])


def train_model(
    pairs: Sequence[LabelledPair],
    *,
    min_similarity: float,
    threshold: float = 0.5,
    target_wrong_rate: float = 0.01,
    features: Sequence[str] = FEATURES,
    trained_on: Mapping[str, Any] | None = None,
) -> LogisticModel:
    """Fits the model on the pairs at or above the pre-filter.

    The serving threshold is chosen afterwards, on whole lookups (see the benchmark's
    `--train`), because what the target bounds is wrong answers among *served* hits, not
    among candidate pairs. `features` picks a subset of FEATURES (the ablation's smaller
    models)."""
    kept = [p for p in pairs if p.pair.similarity >= min_similarity]
    if len({p.correct for p in kept}) < 2:
        raise ValueError("training needs both correct and wrong pairs above the pre-filter")
    x = feature_matrix(kept, features)
    y = np.asarray([1.0 if p.correct else 0.0 for p in kept])
    mean, scale, coef, intercept = fit_logistic(x, y)
    info = {"pairs": len(kept), "correct": int(y.sum()), **(trained_on or {})}
    return LogisticModel(
        features=tuple(features),
        mean=tuple(mean.tolist()),
        scale=tuple(scale.tolist()),
        coef=tuple(coef.tolist()),
        intercept=intercept,
        threshold=threshold,
        target_wrong_rate=target_wrong_rate,
        min_similarity=min_similarity,
        trained_on=info,
    )

"""Fits the pair model (pair_model.py) on labelled fit-half pairs: numpy only, deterministic.

1. Keep the pairs at or above the cosine pre-filter; x = features.FEATURES of each.
2. |u - v| and u * v of each pair, each projected onto its leading `components` principal
   directions (an SVD of the kept pairs, centred, signs fixed): 768 inputs become
   2 x components.
3. On the standardised [x, projections]: a logistic regression plus `units` relu units (one
   hidden layer with a linear skip), L2-penalised, full-batch Adam from a seeded start for a
   fixed number of steps, so a refit gives the same file. `units=0` fits the linear model by
   Newton's method (train.fit_logistic) instead.
4. Fold: the first layer and the skip are linear in the projections, which are linear in the
   vectors, so projection, centring and standardisation collapse into per-unit weights over
   the 384 components and shifted biases. The file needs no projection matrix.

The hyperparameters were chosen on an inner split of the fit half (two folds by query hash,
pair-level AUC): 64 components; linear 0.82, 16 units 0.86, 32 units 0.87 on one fold. 16 units
keep the file near 130 KB. The serving threshold is chosen afterwards on whole lookups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.cache.verifiers.features import FEATURES
from services.cache.verifiers.pair_model import VECTOR_FEATURES, Hidden, PairModel
from services.cache.verifiers.train import LabelledPair, feature_matrix, fit_logistic

Matrix = NDArray[np.float64]
DEFAULT_COMPONENTS = 64
DEFAULT_UNITS = 16
DEFAULT_PAIR_L2 = 0.01  # Adam's penalty, per pair (the loss is a mean)
DEFAULT_STEPS = 800
LEARNING_RATE = 0.01
SEED = 0


def vector_blocks(pairs: Sequence[LabelledPair]) -> dict[str, Matrix]:
    """|u - v| and u * v of every pair, one row each (float64)."""
    if any(p.pair.query_vector is None or p.pair.candidate_vector is None for p in pairs):
        raise ValueError("every training pair needs both vectors")
    u = np.stack([np.asarray(p.pair.query_vector, np.float64) for p in pairs])
    v = np.stack([np.asarray(p.pair.candidate_vector, np.float64) for p in pairs])
    return {"abs_diff": np.abs(u - v), "product": u * v}


def principal_axes(x: Matrix, components: int) -> tuple[Matrix, Matrix]:
    """(centre, axes): the mean row and the leading right singular vectors, one per row.

    Each axis's sign is fixed (largest component positive), so refits give the same file."""
    centre = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - centre, full_matrices=False)
    axes = vt[:components]
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    return centre, axes * signs[:, None]


@dataclass
class _Net:
    """Weights over standardised inputs: skip (inputs,), first (inputs, units), ..."""

    skip: Matrix
    first: Matrix
    bias: Matrix
    out: Matrix
    intercept: float


def fit_net(x: Matrix, y: Matrix, units: int, l2: float, steps: int) -> _Net:
    """Full-batch Adam on the mean log-loss plus l2/2 * |weights|^2; x is standardised."""
    rng = np.random.default_rng(SEED)
    n, inputs = x.shape
    params = [
        np.zeros(inputs),  # skip
        rng.normal(0.0, 1.0 / np.sqrt(inputs), (inputs, units)),  # first layer
        np.zeros(units),  # bias
        rng.normal(0.0, 1.0 / np.sqrt(units), units),  # out
        np.zeros(1),  # intercept
    ]
    moments = [np.zeros_like(p) for p in params]
    squares = [np.zeros_like(p) for p in params]
    for step in range(1, steps + 1):
        skip, first, bias, out, intercept = params
        hidden = np.maximum(x @ first + bias, 0.0)
        z = x @ skip + hidden @ out + intercept[0]
        error = (1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))) - y) / n
        back = np.outer(error, out) * (hidden > 0)
        grads = [
            x.T @ error + l2 * skip,
            x.T @ back + l2 * first,
            back.sum(axis=0),
            hidden.T @ error + l2 * out,
            np.array([error.sum()]),
        ]
        for i, grad in enumerate(grads):
            moments[i] = 0.9 * moments[i] + 0.1 * grad
            squares[i] = 0.999 * squares[i] + 0.001 * grad * grad
            m_hat = moments[i] / (1 - 0.9**step)
            v_hat = squares[i] / (1 - 0.999**step)
            params[i] -= LEARNING_RATE * m_hat / (np.sqrt(v_hat) + 1e-8)
    skip, first, bias, out, intercept = params
    return _Net(skip, first, bias, out, float(intercept[0]))


def _fold(
    weights: Matrix, mean: Matrix, scale: Matrix, n: int, axes: dict[str, tuple[Matrix, Matrix]]
) -> tuple[Matrix, dict[str, Matrix], Matrix]:
    """Weights (inputs, m) over standardised [x, projections] -> (text (m, n), vector per
    block (m, dim), offset (m,)): the same outputs from t = standardised x and the raw blocks."""
    offset = np.zeros(weights.shape[1])
    vector: dict[str, Matrix] = {}
    start = n
    for name in VECTOR_FEATURES:
        centre, basis = axes[name]
        block = slice(start, start + len(basis))
        per_raw = weights[block] / scale[block, None]  # (k, m)
        vector[name] = per_raw.T @ basis
        offset -= per_raw.T @ (basis @ centre + mean[block])
        start = block.stop
    return weights[:n].T, vector, offset


def train_pair_model(
    pairs: Sequence[LabelledPair],
    *,
    min_similarity: float,
    components: int = DEFAULT_COMPONENTS,
    units: int = DEFAULT_UNITS,
    l2: float = DEFAULT_PAIR_L2,
    steps: int = DEFAULT_STEPS,
    threshold: float = 0.5,
    target_wrong_rate: float = 0.01,
    trained_on: Mapping[str, Any] | None = None,
) -> PairModel:
    kept = [p for p in pairs if p.pair.similarity >= min_similarity]
    if len({p.correct for p in kept}) < 2:
        raise ValueError("training needs both correct and wrong pairs above the pre-filter")
    text = feature_matrix(kept, FEATURES)
    blocks = vector_blocks(kept)
    axes = {name: principal_axes(blocks[name], components) for name in VECTOR_FEATURES}
    projected = [(blocks[name] - axes[name][0]) @ axes[name][1].T for name in VECTOR_FEATURES]
    x = np.hstack([text, *projected])
    y = np.asarray([1.0 if p.correct else 0.0 for p in kept])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    n = text.shape[1]
    if units:
        net = fit_net((x - mean) / scale, y, units, l2, steps)
    else:
        _, _, coef, icpt = fit_logistic(x, y)
        net = _Net(coef, np.zeros((len(coef), 0)), np.zeros(0), np.zeros(0), icpt)
    skip_text, skip_vector, skip_offset = _fold(net.skip[:, None], mean, scale, n, axes)
    first_text, first_vector, first_offset = _fold(net.first, mean, scale, n, axes)
    hidden = None
    if units:
        hidden = Hidden(first_text, first_vector, net.bias + first_offset, net.out)
    info = {
        "pairs": len(kept),
        "correct": int(y.sum()),
        "components": components,
        "units": units,
        "l2": l2,
        "steps": steps,
        **(trained_on or {}),
    }
    return PairModel(
        features=FEATURES,
        mean=tuple(mean[:n].tolist()),
        scale=tuple(scale[:n].tolist()),
        coef=tuple(skip_text[0].tolist()),
        vector_coef={k: w[0] for k, w in skip_vector.items()},
        intercept=net.intercept + float(skip_offset[0]),
        threshold=threshold,
        target_wrong_rate=target_wrong_rate,
        min_similarity=min_similarity,
        trained_on=info,
        hidden=hidden,
    )

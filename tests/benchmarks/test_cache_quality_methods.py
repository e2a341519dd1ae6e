"""Training-only extra pairs: kept above the pre-filter, and split into the inner folds by the
same query hash as the fit pairs, so cross-fitted thresholds stay honest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from benchmarks import cache_quality_methods
from benchmarks.cache_quality_methods import (
    cross_fitted_sweep,
    extra_pairs,
    fit_pairs,
    inner_fold,
)
from services.cache.verifiers.pair_model import EMBEDDING_DIM, PairModel
from services.cache.verifiers.replay import Probe, Space, Vectors
from services.cache.verifiers.train import LabelledPair


def near(base: np.ndarray, seed: int, spread: float) -> np.ndarray:
    v = base + np.random.default_rng(seed).normal(scale=spread, size=EMBEDDING_DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def qqp_like(prefix: str, count: int, fit: bool) -> tuple[list[Space], dict[str, np.ndarray]]:
    """One namespace per pair; every other pair's texts are close (cosine about 0.9)."""
    spaces, vectors = [], {}
    for i in range(count):
        base = near(np.zeros(EMBEDDING_DIM), 1000 + i, 1.0)
        a, b = f"{prefix} stored {i}", f"{prefix} query {i}"
        vectors[a] = base
        vectors[b] = near(base, i, 0.02 if i % 2 else 0.2)
        label = f"{prefix}-{i}"
        spaces.append(Space(label, {a: label}, [Probe(b, label if i % 4 else None, fit)]))
    return spaces, vectors


def keys(pairs: Sequence[LabelledPair]) -> list[tuple[str, str, bool]]:
    """Pairs compare by their texts and label (their vectors are arrays)."""
    return [(p.pair.query, p.pair.candidate, p.correct) for p in pairs]


def fake_model() -> PairModel:
    return PairModel(
        features=("cosine",),
        mean=(0.9,),
        scale=(0.1,),
        coef=(2.0,),
        vector_coef={"abs_diff": np.zeros(EMBEDDING_DIM), "product": np.zeros(EMBEDDING_DIM)},
        intercept=0.0,
        threshold=0.5,
        target_wrong_rate=0.01,
        min_similarity=0.0,
        trained_on={},
    )


@pytest.fixture
def data() -> tuple[dict[str, list[Space]], list[Space], Vectors]:
    evaluated, vectors = qqp_like("eval", 12, True)
    held, held_vectors = qqp_like("held", 4, False)
    extra, extra_vectors = qqp_like("extra", 16, True)
    return {"qqp": evaluated + held}, extra, {**vectors, **held_vectors, **extra_vectors}


def test_extra_pairs_join_the_fit_pairs_only_above_the_pre_filter(
    data: tuple[dict[str, list[Space]], list[Space], Vectors],
) -> None:
    workloads, extra_spaces, vectors = data
    extra = extra_pairs(extra_spaces, vectors, 0.0)
    floor = 0.5
    above = [p for p in extra if p.pair.similarity >= floor]
    assert 0 < len(above) < len(extra)

    pairs = fit_pairs(workloads, vectors, floor, extra)

    assert keys(pairs) == keys(fit_pairs(workloads, vectors, floor) + above)
    assert not any(p.pair.query.startswith("held") for p in pairs)  # held back: never trained


def test_inner_folds_split_extra_pairs_by_the_query_hash_like_the_fit_pairs(
    data: tuple[dict[str, list[Space]], list[Space], Vectors],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workloads, extra_spaces, vectors = data
    pairs = fit_pairs(workloads, vectors, 0.0, extra_pairs(extra_spaces, vectors, 0.0))
    trained: list[tuple[list[LabelledPair], Any]] = []

    def record(folded: Sequence[LabelledPair], **kwargs: Any) -> PairModel:
        trained.append((list(folded), kwargs["units"]))
        return fake_model()

    monkeypatch.setattr(cache_quality_methods, "train_pair_model", record)
    cross_fitted_sweep(workloads, vectors, pairs, (), units=32)

    assert [units for _, units in trained] == [32, 32]  # the inner models have the model's size
    for fold, (folded, _) in enumerate(trained):
        assert keys(folded) == keys([p for p in pairs if inner_fold(p.pair.query) == fold])
    queries = [{p.pair.query for p in folded} for folded, _ in trained]
    assert not queries[0] & queries[1]
    assert all(any(q.startswith("extra") for q in fold) for fold in queries)

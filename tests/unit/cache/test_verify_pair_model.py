"""The pair model: scoring formula, folding exactness, training determinism, and a loader that
refuses files it cannot trust."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from services.cache.verifiers import LearnedVerifier, PairModel, load_model
from services.cache.verifiers.features import FEATURES, pair_features
from services.cache.verifiers.learned import DEFAULT_MODEL_PATH
from services.cache.verifiers.pair_model import PAIR_MODEL_FORMAT, Hidden
from services.cache.verifiers.text import Signals
from services.cache.verifiers.train import LabelledPair
from services.cache.verifiers.train_pair import _fold, principal_axes, train_pair_model
from services.cache.verify import Pair

DIM = 384
NS = "namespace"


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def tiny(**overrides) -> PairModel:
    """Only the cosine and one vector direction matter, so scores can be worked out by hand."""
    diff = np.zeros(DIM)
    diff[0] = -5.0
    fields = {
        "features": ("cosine",),
        "mean": (0.9,),
        "scale": (0.1,),
        "coef": (2.0,),
        "vector_coef": {"abs_diff": diff, "product": np.zeros(DIM)},
        "intercept": 0.5,
        "threshold": 0.5,
        "target_wrong_rate": 0.01,
        "min_similarity": 0.75,
        "trained_on": {"by": "hand"},
    }
    return PairModel(**{**fields, **overrides})


def pair(u: np.ndarray, v: np.ndarray, query: str = "a b", candidate: str = "a c") -> Pair:
    return Pair(query, candidate, float(u @ v), NS, u, v, "answer")


def scored(model: PairModel, p: Pair) -> float:
    return model.score_pair(p, Signals(p.query), Signals(p.candidate))


def test_score_is_the_documented_formula():
    u, v = unit(1), unit(2)
    p = pair(u, v)
    z = 0.5 + 2.0 * (p.similarity - 0.9) / 0.1 - 5.0 * abs(float(u[0]) - float(v[0]))
    assert scored(tiny(), p) == pytest.approx(1 / (1 + math.exp(-z)))


def test_hidden_units_add_relu_of_their_inputs():
    u, v = unit(3), unit(4)
    vector = {"abs_diff": np.zeros((1, DIM)), "product": np.zeros((1, DIM))}
    vector["product"][0, 7] = 100.0
    hidden = Hidden(np.zeros((1, 1)), vector, np.array([-0.5]), np.array([3.0]))
    with_unit = tiny(hidden=hidden)
    extra = 3.0 * max(0.0, 100.0 * float(u[7]) * float(v[7]) - 0.5)
    base = scored(tiny(), pair(u, v))
    z = math.log(base / (1 - base)) + extra
    assert scored(with_unit, pair(u, v)) == pytest.approx(1 / (1 + math.exp(-z)), rel=1e-6)


def test_scoring_needs_both_vectors_of_the_right_size():
    u = unit(5)
    with pytest.raises(ValueError, match="384-d vectors"):
        scored(tiny(), Pair("a", "b", 0.9, NS, u, None))
    with pytest.raises(ValueError, match="384-d vectors"):
        scored(tiny(), Pair("a", "b", 0.9, NS, u, u[:10]))


def test_json_round_trip_scores_the_same(tmp_path: Path):
    path = tmp_path / "model.json"
    model = tiny(hidden=Hidden(np.ones((2, 1)), {k: np.full((2, DIM), 0.01) for k in
                 ("abs_diff", "product")}, np.zeros(2), np.array([1.0, -1.0])))  # fmt: skip
    model.save(path)
    back = load_model(path)
    assert isinstance(back, PairModel)
    p = pair(unit(6), unit(7))
    assert scored(back, p) == pytest.approx(scored(model, p), abs=1e-9)
    assert json.loads(path.read_text())["format"] == PAIR_MODEL_FORMAT


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: {**d, "format": "pickle"}, "format"),
        (lambda d: {**d, "features": ["vibes"]}, "unknown features"),
        (lambda d: {**d, "embedding": {"model": "other/model", "dim": 384}}, "weights are for"),
        (lambda d: {**d, "embedding": {**d["embedding"], "dim": 768}}, "weights are for"),
        (lambda d: {**d, "vector_features": ["abs_diff"]}, "vector_features"),
        (lambda d: {**d, "vector_coef": {**d["vector_coef"], "product": [0.0] * 10}}, "384"),
        (lambda d: {**d, "coef": [1.0, 2.0]}, "same length"),
        (lambda d: {**d, "threshold": 2.0}, "threshold"),
        (lambda d: {**d, "vetoes": ["spelling"]}, "unknown vetoes"),
    ],
)
def test_mismatched_files_are_refused(change, message):
    good = tiny().to_json()
    with pytest.raises(ValueError, match=message):
        PairModel.from_json(change(good))


def test_fold_gives_the_same_outputs_as_the_projected_inputs():
    rng = np.random.default_rng(0)
    n, k, m = 3, 4, 2
    blocks = {name: rng.normal(size=(50, DIM)) for name in ("abs_diff", "product")}
    axes = {name: principal_axes(x, k) for name, x in blocks.items()}
    text = rng.normal(size=(50, n))
    x = np.hstack([text, *((blocks[b] - axes[b][0]) @ axes[b][1].T for b in blocks)])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    weights = rng.normal(size=(n + 2 * k, m))
    expected = ((x - mean) / scale) @ weights
    text_w, vector_w, offset = _fold(weights, mean, scale, n, axes)
    t = (text - mean[:n]) / scale[:n]
    got = t @ text_w.T + sum(blocks[b] @ vector_w[b].T for b in blocks) + offset
    np.testing.assert_allclose(got, expected, atol=1e-9)


def synthetic_pairs() -> list[LabelledPair]:
    """Right pairs differ little along direction 0, wrong ones a lot; cosines overlap."""
    pairs = []
    for i in range(120):
        u = unit(100 + i)
        v = u.copy()
        v[0] += 0.3 if i % 2 else 0.02
        v[1:] += np.random.default_rng(i).normal(scale=0.02, size=DIM - 1).astype(np.float32)
        v /= np.linalg.norm(v)
        p = Pair(f"question {i}", f"question {i}?", float(u @ v), NS, u, v)
        pairs.append(LabelledPair(p, correct=not i % 2))
    return pairs


@pytest.mark.parametrize("units", [0, 4])
def test_training_is_deterministic_and_separates_on_the_vectors(units):
    kwargs = {"min_similarity": 0.5, "components": 8, "units": units, "steps": 200}
    first = train_pair_model(synthetic_pairs(), **kwargs)
    second = train_pair_model(synthetic_pairs(), **kwargs)
    assert first.to_json() == second.to_json()
    assert first.features == FEATURES and (first.hidden is None) == (units == 0)
    verifier = LearnedVerifier(first)
    scores = [(verifier.score(p.pair), p.correct) for p in synthetic_pairs()]
    right = min(s for s, ok in scores if ok)
    wrong = max(s for s, ok in scores if not ok)
    assert right > wrong


def test_shipped_model_is_a_small_pair_model_that_names_its_inputs():
    assert DEFAULT_MODEL_PATH.stat().st_size < 300_000
    model = load_model(DEFAULT_MODEL_PATH)
    assert isinstance(model, PairModel)
    assert model.features == FEATURES and model.hidden is not None
    assert 0.0 < model.min_similarity < 1.0 and 0.0 <= model.threshold <= 1.0
    assert model.trained_on["split"].startswith("sha1(text) % 10 < 5 is the fit half")
    # Deterministic, and a pair far apart in embedding space scores below an identical one.
    u, v = unit(8), unit(9)
    identical = replace(pair(u, u, "what is a cat", "what is a cat?"), similarity=1.0)
    same = scored(model, identical)
    apart = scored(model, pair(u, v, "what is a cat", "what is a dog?"))
    assert same == scored(model, identical)
    assert apart < same
    assert set(pair_features(Signals("a"), Signals("b"), 0.5)) == set(model.features)


def test_a_truncated_file_is_refused_as_a_value_error(tmp_path: Path):
    path = tmp_path / "model.json"
    data = tiny().to_json()
    del data["vector_coef"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not a usable model file"):
        load_model(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_model(path)

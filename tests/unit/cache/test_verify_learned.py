"""The learned verifier: model file format, scoring, training and the shipped model."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from services.cache.verifiers import LearnedVerifier, LogisticModel, build_verifier
from services.cache.verifiers.calibration import NamespaceCalibrator
from services.cache.verifiers.features import FEATURES
from services.cache.verifiers.learned import DEFAULT_MODEL_PATH, MODEL_FORMAT
from services.cache.verifiers.train import LabelledPair, fit_logistic, train_model
from services.cache.verify import Verdict

NS = "namespace"


def tiny_model(**overrides) -> LogisticModel:
    """p = sigmoid(20 * (cosine - 0.9) - 10 * negation), written out by hand."""
    fields = {
        "features": ("cosine", "negation"),
        "mean": (0.9, 0.0),
        "scale": (1.0, 1.0),
        "coef": (20.0, -10.0),
        "intercept": 0.0,
        "threshold": 0.5,
        "target_wrong_rate": 0.01,
        "min_similarity": 0.8,
        "trained_on": {"by": "hand"},
    }
    return LogisticModel(**{**fields, **overrides})


def test_score_is_the_logistic_of_the_standardised_features():
    model = tiny_model()
    assert model.score({"cosine": 0.9, "negation": 0.0}) == pytest.approx(0.5)
    assert model.score({"cosine": 1.0, "negation": 0.0}) == pytest.approx(1 / (1 + math.exp(-2)))
    assert model.score({"cosine": 1.0, "negation": 1.0}) == pytest.approx(1 / (1 + math.exp(8)))
    # Extreme inputs do not overflow.
    assert model.score({"cosine": 100.0, "negation": 0.0}) == pytest.approx(1.0)
    assert model.score({"cosine": -100.0, "negation": 0.0}) == pytest.approx(0.0)


def test_verifier_rejects_a_negated_look_alike_and_accepts_the_paraphrase():
    verifier = LearnedVerifier(tiny_model())
    assert verifier.calibrator.base_threshold == pytest.approx(0.5)
    paraphrase = verifier.verify(
        "Is it safe to eat raw eggs?", "Are raw eggs safe to eat?", 0.95, NS
    )
    negated = verifier.verify(
        "Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?", 0.95, NS
    )
    assert paraphrase.accepted
    assert not negated.accepted
    assert negated.reason == "learned"


def test_a_veto_rejects_before_the_score_is_looked_at():
    # Cosine 1.0 gives p = 0.88 even with the negation weight; the veto still says no.
    lenient = tiny_model(coef=(20.0, 0.0))
    question, negated = "Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?"
    assert LearnedVerifier(lenient).verify(question, negated, 1.0, NS).accepted
    strict = LearnedVerifier(replace(lenient, vetoes=("negation", "number")))
    assert strict.vetoed(question, negated) == "negation"
    assert strict.verify(question, negated, 1.0, NS) == Verdict(False, "negation")
    assert strict.verify(question, "Are raw eggs safe to eat?", 1.0, NS).accepted
    with pytest.raises(ValueError, match="unknown vetoes"):
        tiny_model(vetoes=("spelling",))


def test_feedback_raises_the_bar_of_its_namespace_only():
    calibrator = NamespaceCalibrator(0.5, min_feedback=50)
    verifier = LearnedVerifier(tiny_model(), calibrator=calibrator)
    query, stored = "How do I top up my card?", "How can I top up my card?"
    assert verifier.verify(query, stored, 0.93, "bank").accepted  # p = 0.65
    for _ in range(50):
        verifier.record_feedback(query, stored, 0.93, "bank", correct=False)
    assert not verifier.verify(query, stored, 0.93, "bank").accepted
    assert verifier.verify(query, stored, 0.93, "other").accepted


def test_json_round_trip_is_exact(tmp_path: Path):
    path = tmp_path / "model.json"
    tiny_model().save(path)
    assert LogisticModel.load(path) == tiny_model()
    assert json.loads(path.read_text())["format"] == MODEL_FORMAT


def test_malformed_model_files_are_refused():
    good = tiny_model().to_json()
    with pytest.raises(ValueError, match="format"):
        LogisticModel.from_json({**good, "format": "pickle"})
    with pytest.raises(ValueError, match="unknown features"):
        tiny_model(features=("cosine", "vibes"))
    with pytest.raises(ValueError, match="same length"):
        tiny_model(coef=(1.0,))
    with pytest.raises(ValueError, match="positive"):
        tiny_model(scale=(1.0, 0.0))
    with pytest.raises(ValueError, match="threshold"):
        tiny_model(threshold=1.5)


def synthetic_pairs() -> list[LabelledPair]:
    """Paraphrases (right) and negated or renumbered look-alikes (wrong) at similar cosines."""
    pairs = []
    for i in range(40):
        cosine = 0.86 + (i % 10) / 100
        pairs.append(
            LabelledPair(
                f"How do I open account {i}?", f"How can I open account {i}?", cosine, True
            )
        )
        pairs.append(LabelledPair(f"Is plan {i} safe?", f"Is plan {i} not safe?", cosine, False))
        pairs.append(
            LabelledPair(f"What is {i}% of 80?", f"What is {i + 5}% of 80?", cosine, False)
        )
    return pairs


def test_training_is_deterministic_and_learns_the_mismatch_flags():
    first = train_model(synthetic_pairs(), min_similarity=0.8, threshold=0.5)
    second = train_model(synthetic_pairs(), min_similarity=0.8, threshold=0.5)
    assert first.to_json() == second.to_json()
    assert first.features == FEATURES
    weights = dict(zip(first.features, first.coef, strict=True))
    assert weights["negation"] < 0
    assert weights["number"] < 0
    verifier = LearnedVerifier(first)
    assert verifier.verify(
        "How do I open account 7?", "How can I open account 7?", 0.9, NS
    ).accepted
    assert not verifier.verify("Is plan 7 safe?", "Is plan 7 not safe?", 0.9, NS).accepted


def test_training_drops_pairs_below_the_pre_filter_and_needs_both_labels():
    pairs = [LabelledPair("a b", "a c", 0.5, False), *synthetic_pairs()[:1] * 3]
    with pytest.raises(ValueError, match="both"):
        train_model(pairs, min_similarity=0.8)


def test_fit_logistic_separates_a_separable_feature():
    import numpy as np

    x = np.array([[0.0], [0.1], [0.9], [1.0]])
    y = np.array([0.0, 0.0, 1.0, 1.0])
    _, _, coef, _ = fit_logistic(x, y)
    assert coef[0] > 0


def test_shipped_model_loads_and_scores_deterministically():
    verifier = build_verifier("learned")
    assert isinstance(verifier, LearnedVerifier)
    model = LogisticModel.load(DEFAULT_MODEL_PATH)
    assert model.features == FEATURES
    assert 0.0 <= model.threshold <= 1.0
    assert 0.0 < model.min_similarity < 1.0
    query, stored = "What is the capital of France?", "What's the capital city of France?"
    first = verifier.score(query, stored, 0.957)
    assert first == LearnedVerifier(model).score(query, stored, 0.957)
    assert 0.0 < first < 1.0
    # Cosines as MiniLM gives them (0.87-0.95): none reaches the shipped threshold.
    eggs = "Is it safe to eat raw eggs?"
    for question, look_alike, cosine in [
        (eggs, "Is it not safe to eat raw eggs?", 0.95),
        (query, "What is the capital of Spain?", 0.90),
        (query, "What was the capital of France in 1700?", 0.87),
    ]:
        assert not verifier.verify(question, look_alike, cosine, NS).accepted, look_alike
    # The negation costs more than a lower cosine: the look-alike scores below the paraphrase.
    assert verifier.score(eggs, "Is it not safe to eat raw eggs?", 0.95) < first
    # At the 60%-hit operating point (p >= 0.5) the paraphrase is served, the look-alikes not.
    relaxed = LearnedVerifier(replace(model, threshold=0.5))
    assert relaxed.verify(query, stored, 0.957, NS).accepted
    assert not relaxed.verify(eggs, "Is it not safe to eat raw eggs?", 0.95, NS).accepted

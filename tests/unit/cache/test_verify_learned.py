"""The learned verifier: model file format, scoring, training and the shipped model."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from services.cache.verifiers import LearnedVerifier, LogisticModel, build_verifier, load_model
from services.cache.verifiers.calibration import NamespaceCalibrator
from services.cache.verifiers.features import FEATURES
from services.cache.verifiers.learned import MODEL_FORMAT
from services.cache.verifiers.train import LabelledPair, fit_logistic, train_model
from services.cache.verify import Pair, Verdict

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
        Pair("Is it safe to eat raw eggs?", "Are raw eggs safe to eat?", 0.95, NS)
    )
    negated = verifier.verify(
        Pair("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?", 0.95, NS)
    )
    assert paraphrase.accepted
    assert not negated.accepted
    assert negated.reason == "learned"


def test_a_veto_rejects_before_the_score_is_looked_at():
    # Cosine 1.0 gives p = 0.88 even with the negation weight; the veto still says no.
    lenient = tiny_model(coef=(20.0, 0.0))
    question, negated = "Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?"
    assert LearnedVerifier(lenient).verify(Pair(question, negated, 1.0, NS)).accepted
    strict = LearnedVerifier(replace(lenient, vetoes=("negation", "number")))
    assert strict.vetoed(Pair(question, negated, 1.0, NS)) == "negation"
    assert strict.verify(Pair(question, negated, 1.0, NS)) == Verdict(
        False, "negation", vetoed=True
    )
    assert strict.verify(Pair(question, "Are raw eggs safe to eat?", 1.0, NS)).accepted
    with pytest.raises(ValueError, match="unknown vetoes"):
        tiny_model(vetoes=("spelling",))


def test_feedback_raises_the_bar_of_its_namespace_only():
    calibrator = NamespaceCalibrator(0.5, min_feedback=50)
    verifier = LearnedVerifier(tiny_model(), calibrator=calibrator)
    query, stored = "How do I top up my card?", "How can I top up my card?"
    assert verifier.verify(Pair(query, stored, 0.93, "bank")).accepted  # p = 0.65
    for _ in range(50):
        verifier.record_feedback(Pair(query, stored, 0.93, "bank"), correct=False)
    assert not verifier.verify(Pair(query, stored, 0.93, "bank")).accepted
    assert verifier.verify(Pair(query, stored, 0.93, "other")).accepted


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
                Pair(f"How do I open account {i}?", f"How can I open account {i}?", cosine, NS),
                True,
            )
        )
        pairs.append(
            LabelledPair(Pair(f"Is plan {i} safe?", f"Is plan {i} not safe?", cosine, NS), False)
        )
        pairs.append(
            LabelledPair(
                Pair(f"What is {i}% of 80?", f"What is {i + 5}% of 80?", cosine, NS), False
            )
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
        Pair("How do I open account 7?", "How can I open account 7?", 0.9, NS)
    ).accepted
    assert not verifier.verify(Pair("Is plan 7 safe?", "Is plan 7 not safe?", 0.9, NS)).accepted


def test_training_drops_pairs_below_the_pre_filter_and_needs_both_labels():
    pairs = [LabelledPair(Pair("a b", "a c", 0.5, NS), False), *synthetic_pairs()[:1] * 3]
    with pytest.raises(ValueError, match="both"):
        train_model(pairs, min_similarity=0.8)


def test_fit_logistic_separates_a_separable_feature():
    import numpy as np

    x = np.array([[0.0], [0.1], [0.9], [1.0]])
    y = np.array([0.0, 0.0, 1.0, 1.0])
    _, _, coef, _ = fit_logistic(x, y)
    assert coef[0] > 0


def test_format_1_files_still_load_through_load_model(tmp_path: Path):
    """The session-1 logistic file (format /1) is still served if an operator points at one."""
    path = tmp_path / "logistic.json"
    tiny_model().save(path)
    model = load_model(path)
    assert isinstance(model, LogisticModel) and model == tiny_model()
    verifier = build_verifier("learned", path)
    assert isinstance(verifier, LearnedVerifier)
    eggs = "Is it safe to eat raw eggs?"
    assert verifier.verify(Pair(eggs, "Are raw eggs safe to eat?", 0.95, NS)).accepted
    assert not verifier.verify(Pair(eggs, "Is it not safe to eat raw eggs?", 0.95, NS)).accepted

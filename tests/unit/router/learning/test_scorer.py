from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.router.learning.fit import Standardiser, fit_logistic, principal_directions
from services.router.learning.scorer import (
    DEFAULT_SCORER,
    AnswerScorer,
    Dense,
    Projection,
    ScorerModel,
)
from tests.unit.router.learning.fixtures import ARC_PROMPT, CODE_PROMPT, HashEmbedder

MODELS = ("cheap", "strong")


def tiny_model() -> ScorerModel:
    """A scorer fitted on a handful of synthetic rows: enough to exercise every code path."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((20, 384))
    projection = Projection(*principal_directions(vectors, 2))
    base = ScorerModel(MODELS, projection, projection, np.zeros(0), np.ones(0), ())
    width = len(base.feature_names)
    rows = rng.standard_normal((60, width))
    labels = (rows[:, 0] > 0).astype(np.int64)
    standardise = Standardiser.fit(rows)
    weights, bias = fit_logistic(standardise(rows), labels, l2=1.0)
    layer = Dense(weights[:, None], np.asarray([bias]), relu=False)
    return ScorerModel(
        MODELS, projection, projection, standardise.mean, standardise.scale, (layer,)
    )


def test_scores_are_probabilities_and_deterministic() -> None:
    scorer = AnswerScorer(tiny_model(), HashEmbedder())
    first = scorer.score(ARC_PROMPT, "C", "cheap", [("strong", "C")])
    again = scorer.score(ARC_PROMPT, "C", "cheap", [("strong", "C")])
    assert 0.0 <= first <= 1.0
    assert first == again


def test_one_embedding_call_covers_prompt_answer_and_earlier_answers() -> None:
    embedder = HashEmbedder()
    AnswerScorer(tiny_model(), embedder).score(ARC_PROMPT, "C", "cheap", [("a", "B"), ("b", "C")])
    assert len(embedder.calls) == 1
    assert len(embedder.calls[0]) == 4


def test_a_saved_model_loads_back_to_the_same_scores(tmp_path: Path) -> None:
    model = tiny_model()
    path = tmp_path / "scorer.json"
    model.save(path)
    loaded = ScorerModel.load(path)
    for answer in ("C", "B", "I don't know"):
        before = AnswerScorer(model, HashEmbedder()).score(ARC_PROMPT, answer, "cheap")
        after = AnswerScorer(loaded, HashEmbedder()).score(ARC_PROMPT, answer, "cheap")
        assert after == pytest.approx(before, abs=1e-4)


def test_a_file_for_other_features_is_refused(tmp_path: Path) -> None:
    raw = tiny_model().to_json()
    raw["feature_names"] = raw["feature_names"][:-1]
    with pytest.raises(ValueError, match="different features"):
        ScorerModel.from_json(raw)
    raw = tiny_model().to_json()
    raw["format"] = "something/else"
    with pytest.raises(ValueError, match="not a"):
        ScorerModel.from_json(raw)


def test_the_shipped_scorer_loads_and_scores() -> None:
    shipped = AnswerScorer.load(DEFAULT_SCORER, HashEmbedder())
    assert DEFAULT_SCORER.stat().st_size < 400_000
    assert json.loads(DEFAULT_SCORER.read_text())["metadata"]["trained_on"].startswith(
        "RouterBench"
    )
    code = "```python\ndef f(a, b):\n    return list(set(a) & set(b))\n```"
    for prompt, answer in ((ARC_PROMPT, "C"), (CODE_PROMPT, code)):
        score = shipped.score(prompt, answer, "zero-one-ai/Yi-34B-Chat")
        assert 0.0 < score < 1.0


def test_the_shipped_scorer_trusts_agreement_between_tiers() -> None:
    shipped = AnswerScorer.load(DEFAULT_SCORER, HashEmbedder())
    model = "gpt-3.5-turbo-1106"
    agreed = shipped.score(ARC_PROMPT, "C", model, [("zero-one-ai/Yi-34B-Chat", "C")])
    disputed = shipped.score(ARC_PROMPT, "C", model, [("zero-one-ai/Yi-34B-Chat", "B")])
    assert agreed > disputed


def test_the_shipped_scorer_rejects_code_in_the_wrong_language() -> None:
    shipped = AnswerScorer.load(DEFAULT_SCORER, HashEmbedder())
    model = "gpt-3.5-turbo-1106"
    python = "```python\ndef f(a, b):\n    return [x for x in a if x in b]\n```"
    javascript = "```javascript\nfunction f(a, b) { return a.filter(x => b.includes(x)); }\n```"
    assert shipped.score(CODE_PROMPT, python, model) > shipped.score(CODE_PROMPT, javascript, model)

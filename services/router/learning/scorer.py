"""The learned answer scorer: P(answer is right | prompt, answer, model, earlier tiers' answers).

FrugalGPT (Chen, Zaharia, Zou 2023, "FrugalGPT: How to Use Large Language Models While
Reducing Cost and Improving Performance") gates each cascade tier with a small model that
scores the (query, answer) pair; this is that scorer with the inputs a gateway has at run time
(see features.py). The trained network is a JSON file evaluated with numpy, so the router needs
neither scikit-learn nor torch for it; only the embedder touches a neural network library.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.router.learning.embedding import MiniLm, TextEmbedder
from services.router.learning.features import (
    ANSWER_CHARS,
    PromptInfo,
    handcrafted,
    handcrafted_names,
    read_prompt,
)

FORMAT = "sluice.answer-scorer/1"
MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_SCORER = MODELS_DIR / "answer_scorer.json"
Array = NDArray[np.float64]


def _array(raw: Any, name: str, ndim: int) -> Array:
    value = np.asarray(raw, dtype=np.float64)
    if value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, has {value.ndim}")
    return value


def _rounded(value: Array) -> Any:
    # Six significant digits keep the file small; the scores move by well under 1e-4.
    return np.vectorize(lambda x: float(f"{x:.6g}"), otypes=[float])(value).tolist()


@dataclass(frozen=True)
class Dense:
    weights: Array  # (inputs, outputs)
    bias: Array  # (outputs,)
    relu: bool

    def __call__(self, x: Array) -> Array:
        out = x @ self.weights + self.bias
        return np.maximum(out, 0.0) if self.relu else out


@dataclass(frozen=True)
class Projection:
    """Centre then project an embedding onto its leading principal directions."""

    center: Array  # (dim,)
    basis: Array  # (dim, k)

    def __call__(self, vectors: NDArray[np.float32]) -> Array:
        return (np.asarray(vectors, dtype=np.float64) - self.center) @ self.basis


@dataclass(frozen=True)
class ScorerModel:
    """Weights and preprocessing of a trained scorer; one JSON file per artifact."""

    models: tuple[str, ...]
    prompt: Projection
    answer: Projection
    mean: Array
    scale: Array
    layers: tuple[Dense, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [
            *handcrafted_names(self.models),
            *(f"prompt_pc{i}" for i in range(self.prompt.basis.shape[1])),
            *(f"answer_pc{i}" for i in range(self.answer.basis.shape[1])),
        ]

    def features(
        self,
        info: PromptInfo,
        answer: str,
        model: str,
        earlier: Sequence[str],
        vectors: tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]],
    ) -> Array:
        """The raw feature row of one answer; `vectors` = prompt, answer, earlier answers."""
        prompt_vector, answer_vector, _ = vectors
        base = handcrafted(answer, model, info, earlier, vectors, self.models)
        return np.concatenate(
            [
                np.asarray(base, dtype=np.float64),
                self.prompt(prompt_vector[None, :])[0],
                self.answer(answer_vector[None, :])[0],
            ]
        )

    def predict(self, rows: Array) -> Array:
        """P(correct) for each raw feature row."""
        x = (np.atleast_2d(rows) - self.mean) / self.scale
        for layer in self.layers:
            x = layer(x)
        logits = np.clip(x[:, 0], -30.0, 30.0)
        return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "models": list(self.models),
            "feature_names": self.feature_names,
            "prompt_projection": {
                "center": _rounded(self.prompt.center),
                "basis": _rounded(self.prompt.basis),
            },
            "answer_projection": {
                "center": _rounded(self.answer.center),
                "basis": _rounded(self.answer.basis),
            },
            "standardise": {"mean": _rounded(self.mean), "scale": _rounded(self.scale)},
            "layers": [
                {"weights": _rounded(d.weights), "bias": _rounded(d.bias), "relu": d.relu}
                for d in self.layers
            ],
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ScorerModel:
        if raw.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file (format={raw.get('format')!r})")
        model = cls(
            models=tuple(str(m) for m in raw["models"]),
            prompt=Projection(
                _array(raw["prompt_projection"]["center"], "prompt center", 1),
                _array(raw["prompt_projection"]["basis"], "prompt basis", 2),
            ),
            answer=Projection(
                _array(raw["answer_projection"]["center"], "answer center", 1),
                _array(raw["answer_projection"]["basis"], "answer basis", 2),
            ),
            mean=_array(raw["standardise"]["mean"], "mean", 1),
            scale=_array(raw["standardise"]["scale"], "scale", 1),
            layers=tuple(
                Dense(
                    _array(layer["weights"], "weights", 2),
                    _array(layer["bias"], "bias", 1),
                    bool(layer["relu"]),
                )
                for layer in raw["layers"]
            ),
            metadata=dict(raw.get("metadata", {})),
        )
        model.check(list(raw.get("feature_names", model.feature_names)))
        return model

    def check(self, names: list[str]) -> None:
        """Refuses a file whose shapes or feature order disagree with this code's features."""
        if names != self.feature_names:
            raise ValueError("the scorer file was trained on different features; retrain it")
        width = len(names)
        shapes = [self.mean.shape, self.scale.shape]
        if any(shape != (width,) for shape in shapes) or not self.layers:
            raise ValueError(f"standardisation does not match {width} features")
        for layer in self.layers:
            if layer.weights.shape[0] != width or layer.bias.shape != layer.weights.shape[1:]:
                raise ValueError("layer shapes do not chain")
            width = layer.weights.shape[1]
        if width != 1:
            raise ValueError("the last layer must have one output")

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: Path = DEFAULT_SCORER) -> ScorerModel:
        return cls.from_json(json.loads(path.read_text()))


class AnswerScorer:
    """Scores one tier's answer at run time; the embedder is injected (MiniLM by default)."""

    def __init__(self, model: ScorerModel, embedder: TextEmbedder | None = None) -> None:
        self.model = model
        self._embedder = embedder if embedder is not None else MiniLm()

    @classmethod
    def load(
        cls, path: Path = DEFAULT_SCORER, embedder: TextEmbedder | None = None
    ) -> AnswerScorer:
        return cls(ScorerModel.load(path), embedder)

    def score(
        self,
        prompt: str,
        answer: str,
        model: str,
        earlier_answers: Sequence[tuple[str, str]] = (),
    ) -> float:
        """P(answer is right). earlier_answers: (model, answer) of tiers already tried, in order.

        One embedding call covers the prompt, this answer and the earlier answers. Blocking
        (~15 ms per text with MiniLM on one thread): call it off the event loop.
        """
        info = read_prompt(prompt)
        earlier = [text for _, text in earlier_answers]
        texts = [info.focus, answer[:ANSWER_CHARS], *(t[:ANSWER_CHARS] for t in earlier)]
        vectors = self._embedder.embed(texts)
        return self.score_embedded(info, answer, model, earlier, vectors)

    def score_embedded(
        self,
        info: PromptInfo,
        answer: str,
        model: str,
        earlier: Sequence[str],
        vectors: NDArray[np.float32],
    ) -> float:
        """As score(), with the embeddings at hand: rows are prompt focus, answer, earlier."""
        row = self.model.features(
            info, answer, model, earlier, (vectors[0], vectors[1], vectors[2:])
        )
        return float(self.model.predict(row)[0])

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """The scorer's embedder, for callers that keep vectors across tiers."""
        return self._embedder.embed(texts)

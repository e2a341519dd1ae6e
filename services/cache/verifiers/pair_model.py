"""The pair model: a small network on the two MiniLM vectors plus the text features.

    t = (x - mean) / scale                       (x: features.FEATURES of the pair)
    b = [|u - v|, u * v]                         (u, v: the two unit vectors)
    h = relu(H_t t + H_b b + bias)               (hidden units; none for a linear model)
    z = intercept + coef . t + w . b + out . h
    p(same answer) = sigmoid(z)

Why the vectors: the cosine is one number, sum(u * v), so it weighs every direction alike, and
MiniLM's vectors spend most of their length on topic. Which directions differ (|u - v|) and
which agree (u * v) tell a look-alike ("... in 1700?", another city) from a rewording better
than their sum does. Training (train_pair.py) projects both onto their leading principal
components on the fit half and fits the network there (the projection keeps 768 inputs from
overfitting a few thousand pairs), then folds the projection into the first layer's weights,
so scoring needs no projection matrix: a few dot products per candidate.

The file holds only numbers and names (loading it runs no code); `from_json` refuses a file
of another format, unknown feature names, or weights of another embedding or dimension.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.cache.verifiers.features import CHECKS, FEATURES, pair_features
from services.cache.verifiers.text import Signals
from services.cache.verify import Pair

PAIR_MODEL_FORMAT = "sluice-cache-verifier/2"
# The vectors the weights were fitted on; weights for another model's vectors mean nothing.
EMBEDDING = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
VECTOR_FEATURES = ("abs_diff", "product")


@dataclass(frozen=True, eq=False)
class Hidden:
    """The hidden layer: relu(text . t + sum of vector[k] . b[k] + bias), summed with `out`."""

    text: NDArray[np.float64]  # (units, features)
    vector: Mapping[str, NDArray[np.float64]]  # VECTOR_FEATURES name -> (units, dim)
    bias: NDArray[np.float64]  # (units,)
    out: NDArray[np.float64]  # (units,)

    def check(self, features: int, dim: int) -> None:
        units = len(self.bias)
        shapes = [
            (self.text.shape, (units, features)),
            (self.out.shape, (units,)),
            *((self.vector[k].shape, (units, dim)) for k in VECTOR_FEATURES),
        ]
        if tuple(self.vector) != VECTOR_FEATURES or any(got != want for got, want in shapes):
            raise ValueError(f"hidden layer weights must be shaped for {units} units")
        arrays = [self.text, self.bias, self.out, *self.vector.values()]
        if not all(np.isfinite(a).all() for a in arrays):
            raise ValueError("hidden layer weights must be finite")

    def output(self, t: NDArray[np.float64], blocks: Mapping[str, NDArray[np.float64]]) -> float:
        pre = self.text @ t + self.bias
        for name in VECTOR_FEATURES:
            pre += self.vector[name] @ blocks[name]
        return float(self.out @ np.maximum(pre, 0.0))

    def to_json(self) -> dict[str, Any]:
        return {
            "text": [_rounded(row) for row in self.text.tolist()],
            "vector": {k: [_rounded(r) for r in w.tolist()] for k, w in self.vector.items()},
            "bias": _rounded(self.bias.tolist()),
            "out": _rounded(self.out.tolist()),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Hidden:
        vector = data["vector"]
        return cls(
            text=np.asarray(data["text"], np.float64),
            vector={k: np.asarray(vector[k], np.float64) for k in VECTOR_FEATURES},
            bias=np.asarray(data["bias"], np.float64),
            out=np.asarray(data["out"], np.float64),
        )


@dataclass(frozen=True, eq=False)
class PairModel:
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    # VECTOR_FEATURES name -> weights over the embedding's components.
    vector_coef: Mapping[str, NDArray[np.float64]]
    intercept: float
    threshold: float  # minimum probability to serve, fitted on the fit half's lookups
    target_wrong_rate: float
    min_similarity: float  # the cosine pre-filter it was trained behind
    trained_on: Mapping[str, Any]
    vetoes: tuple[str, ...] = ()
    embedding: str = EMBEDDING
    dim: int = EMBEDDING_DIM
    hidden: Hidden | None = None

    def __post_init__(self) -> None:
        if len({len(self.features), len(self.mean), len(self.scale), len(self.coef)}) != 1:
            raise ValueError("features, mean, scale and coef must have the same length")
        if set(self.features) - set(FEATURES):
            unknown = sorted(set(self.features) - set(FEATURES))
            raise ValueError(f"model uses unknown features {unknown}")
        if set(self.vetoes) - set(CHECKS):
            raise ValueError(f"unknown vetoes {sorted(set(self.vetoes) - set(CHECKS))}")
        if tuple(self.vector_coef) != VECTOR_FEATURES:
            got = list(self.vector_coef)
            raise ValueError(f"vector features must be {list(VECTOR_FEATURES)}, got {got}")
        if self.embedding != EMBEDDING or self.dim != EMBEDDING_DIM:
            raise ValueError(
                f"weights are for {self.embedding} ({self.dim}-d), this service embeds with "
                f"{EMBEDDING} ({EMBEDDING_DIM}-d)"
            )
        weights = self.vector_coef.values()
        if any(w.shape != (self.dim,) or not np.isfinite(w).all() for w in weights):
            raise ValueError(f"every vector weight must be {self.dim} finite numbers")
        if any(s <= 0 for s in self.scale):
            raise ValueError("every scale must be positive")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.hidden is not None:
            self.hidden.check(len(self.features), self.dim)

    def score_pair(self, pair: Pair, query: Signals, candidate: Signals) -> float:
        """Probability in [0, 1] that the candidate's answer serves the query."""
        u, v = pair.query_vector, pair.candidate_vector
        if u is None or v is None or u.shape != (self.dim,) or v.shape != (self.dim,):
            raise ValueError(f"the pair model needs both {self.dim}-d vectors")
        values = pair_features(query, candidate, pair.similarity)
        x = np.asarray([values[name] for name in self.features], np.float64)
        t = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        u64, v64 = u.astype(np.float64), v.astype(np.float64)
        blocks = {"abs_diff": np.abs(u64 - v64), "product": u64 * v64}
        z = self.intercept + float(np.asarray(self.coef) @ t)
        z += sum(float(self.vector_coef[k] @ blocks[k]) for k in VECTOR_FEATURES)
        if self.hidden is not None:
            z += self.hidden.output(t, blocks)
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PAIR_MODEL_FORMAT,
            "embedding": {"model": self.embedding, "dim": self.dim},
            "features": list(self.features),
            "mean": _rounded(self.mean),
            "scale": _rounded(self.scale),
            "coef": _rounded(self.coef),
            "vector_features": list(VECTOR_FEATURES),
            "vector_coef": {k: _rounded(w.tolist(), 7) for k, w in self.vector_coef.items()},
            "intercept": round(self.intercept, 6),
            "threshold": self.threshold,
            "target_wrong_rate": self.target_wrong_rate,
            "min_similarity": self.min_similarity,
            "vetoes": list(self.vetoes),
            "trained_on": dict(self.trained_on),
            "hidden": None if self.hidden is None else self.hidden.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PairModel:
        if data.get("format") != PAIR_MODEL_FORMAT:
            raise ValueError(f"not a {PAIR_MODEL_FORMAT} file (format={data.get('format')!r})")
        if tuple(data.get("vector_features", ())) != VECTOR_FEATURES:
            raise ValueError(f"vector_features must be {list(VECTOR_FEATURES)}")
        embedding = data.get("embedding") or {}
        coef = data["vector_coef"]
        return cls(
            features=tuple(str(f) for f in data["features"]),
            mean=_floats(data["mean"]),
            scale=_floats(data["scale"]),
            coef=_floats(data["coef"]),
            vector_coef={k: np.asarray(coef[k], np.float64) for k in VECTOR_FEATURES},
            intercept=float(data["intercept"]),
            threshold=float(data["threshold"]),
            target_wrong_rate=float(data["target_wrong_rate"]),
            min_similarity=float(data["min_similarity"]),
            trained_on=dict(data.get("trained_on", {})),
            vetoes=tuple(str(v) for v in data.get("vetoes", ())),
            embedding=str(embedding.get("model", "")),
            dim=int(embedding.get("dim", 0)),
            hidden=None if data.get("hidden") is None else Hidden.from_json(data["hidden"]),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), separators=(",", ":")) + "\n", "utf-8")


def _floats(values: Sequence[Any]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _rounded(values: Sequence[float], digits: int = 6) -> list[float]:
    return [round(float(v), digits) for v in values]

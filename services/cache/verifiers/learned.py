"""The learned verifier: a logistic model over the pair features, loaded from a small JSON file.

p(same answer) = sigmoid(intercept + sum_i coef_i * (x_i - mean_i) / scale_i), with x the
features.FEATURES of (query, candidate, cosine). A candidate that fails one of the model's veto
checks (negation, numbers, ...) is rejected before it is scored; otherwise it is served when p
reaches its namespace's threshold (calibration.py), which starts at the model's own threshold,
fitted on whole lookups of the fit half. `python -m benchmarks.cache_quality --train` writes the
file; it holds only numbers and names, so loading it runs no code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.cache.verifiers.calibration import NamespaceCalibrator
from services.cache.verifiers.features import CHECKS, FEATURES, mismatches, pair_features
from services.cache.verifiers.signals_cache import SignalsCache
from services.cache.verify import ACCEPT, Verdict

MODEL_FORMAT = "sluice-cache-verifier/1"
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "verifier_model.json"


@dataclass(frozen=True)
class LogisticModel:
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    # Minimum probability to serve, fitted on the fit split for the target wrong-answer rate;
    # each namespace starts from it (calibration.py).
    threshold: float
    target_wrong_rate: float
    # The cosine pre-filter the model was fitted behind (SLUICE_CACHE_MIN_SIMILARITY to use).
    min_similarity: float
    # Free-form provenance (data, split, counts), kept for people reading the file.
    trained_on: Mapping[str, Any]
    # Checks (features.CHECKS) that reject a candidate before it is scored. The labels the
    # model learns from treat "weather today" / "weather tomorrow" as the same intent, so it
    # learns to forgive such differences; a cache must not (the answers differ).
    vetoes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        sizes = {len(self.features), len(self.mean), len(self.scale), len(self.coef)}
        if len(sizes) != 1:
            raise ValueError("features, mean, scale and coef must have the same length")
        unknown = set(self.features) - set(FEATURES)
        if unknown:
            raise ValueError(f"model uses unknown features {sorted(unknown)}")
        if set(self.vetoes) - set(CHECKS):
            raise ValueError(f"unknown vetoes {sorted(set(self.vetoes) - set(CHECKS))}")
        if any(s <= 0 for s in self.scale):
            raise ValueError("every scale must be positive")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")

    def score(self, values: Mapping[str, float]) -> float:
        """Probability in [0, 1] that the candidate's answer serves the query."""
        z = self.intercept
        for name, mean, scale, coef in zip(
            self.features, self.mean, self.scale, self.coef, strict=True
        ):
            z += coef * (values[name] - mean) / scale
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "features": list(self.features),
            "mean": _rounded(self.mean),
            "scale": _rounded(self.scale),
            "coef": _rounded(self.coef),
            "intercept": round(self.intercept, 6),
            "threshold": self.threshold,
            "target_wrong_rate": self.target_wrong_rate,
            "min_similarity": self.min_similarity,
            "vetoes": list(self.vetoes),
            "trained_on": dict(self.trained_on),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LogisticModel:
        if data.get("format") != MODEL_FORMAT:
            raise ValueError(f"not a {MODEL_FORMAT} file (format={data.get('format')!r})")
        return cls(
            features=tuple(str(f) for f in data["features"]),
            mean=_floats(data["mean"]),
            scale=_floats(data["scale"]),
            coef=_floats(data["coef"]),
            intercept=float(data["intercept"]),
            threshold=float(data["threshold"]),
            target_wrong_rate=float(data["target_wrong_rate"]),
            min_similarity=float(data["min_similarity"]),
            trained_on=dict(data.get("trained_on", {})),
            vetoes=tuple(str(v) for v in data.get("vetoes", ())),
        )

    @classmethod
    def load(cls, path: Path = DEFAULT_MODEL_PATH) -> LogisticModel:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")


class LearnedVerifier:
    """Serves a candidate when the model's probability reaches its namespace's threshold."""

    def __init__(
        self,
        model: LogisticModel,
        *,
        calibrator: NamespaceCalibrator | None = None,
        signals: SignalsCache | None = None,
    ) -> None:
        self._model = model
        self._calibrator = calibrator or NamespaceCalibrator(
            model.threshold, target_wrong_rate=model.target_wrong_rate
        )
        self._signals = signals or SignalsCache()

    @property
    def model(self) -> LogisticModel:
        return self._model

    @property
    def calibrator(self) -> NamespaceCalibrator:
        return self._calibrator

    def score(self, query: str, candidate: str, similarity: float) -> float:
        values = pair_features(self._signals(query), self._signals(candidate), similarity)
        return self._model.score(values)

    def vetoed(self, query: str, candidate: str) -> str:
        """The first veto check the pair fails, or ""."""
        if not self._model.vetoes:
            return ""
        found = mismatches(self._signals(query), self._signals(candidate))
        return next((check for check in self._model.vetoes if check in found), "")

    def verify(self, query: str, candidate: str, similarity: float, namespace: str) -> Verdict:
        if query == candidate:
            return ACCEPT
        veto = self.vetoed(query, candidate)
        if veto:
            return Verdict(False, veto)
        if self.score(query, candidate, similarity) >= self._calibrator.threshold(namespace):
            return ACCEPT
        return Verdict(False, "learned")

    def record_feedback(
        self, query: str, candidate: str, similarity: float, namespace: str, correct: bool
    ) -> None:
        """A labelled outcome for this namespace's threshold (see calibration.py)."""
        self._calibrator.record(namespace, self.score(query, candidate, similarity), correct)


def _floats(values: Sequence[Any]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(v, 6) for v in values]

"""The learned verifier (LearnedVerifier) and session 1's logistic model (LogisticModel).

LearnedVerifier serves a candidate when its model's probability reaches the namespace's
threshold (calibration.py), which starts at the model's own threshold. A candidate that fails
one of the model's veto checks (negation, numbers, ...) is rejected before it is scored. The
model is any PairScorer: the pair model (pair_model.py, format /2, what
`python -m benchmarks.cache_quality --train` writes and the service ships) or the logistic
model here (format /1):

p(same answer) = sigmoid(intercept + sum_i coef_i * (x_i - mean_i) / scale_i), with x the
features.FEATURES of (query, candidate, cosine). Both files hold only numbers and names, so
loading one runs no code.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from services.cache.verifiers.calibration import NamespaceCalibrator
from services.cache.verifiers.features import CHECKS, FEATURES, mismatches, pair_features
from services.cache.verifiers.signals_cache import SignalsCache
from services.cache.verifiers.text import Signals
from services.cache.verify import ACCEPT, Pair, Verdict

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

    def score_pair(self, pair: Pair, query: Signals, candidate: Signals) -> float:
        """Probability that the candidate's answer serves the query (the vectors are unused)."""
        return self.score(pair_features(query, candidate, pair.similarity))

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


class PairScorer(Protocol):
    """A model file the learned verifier can serve: LogisticModel or PairModel (pair_model.py)."""

    @property
    def threshold(self) -> float: ...
    @property
    def target_wrong_rate(self) -> float: ...
    @property
    def min_similarity(self) -> float: ...
    @property
    def vetoes(self) -> tuple[str, ...]: ...

    def score_pair(self, pair: Pair, query: Signals, candidate: Signals) -> float: ...

    def to_json(self) -> dict[str, Any]: ...


class LearnedVerifier:
    """Serves a candidate when the model's probability reaches its namespace's threshold."""

    def __init__(
        self,
        model: PairScorer,
        *,
        calibrator: NamespaceCalibrator | None = None,
        signals: SignalsCache | None = None,
    ) -> None:
        self._model = model
        self._calibrator = calibrator or NamespaceCalibrator(
            model.threshold, target_wrong_rate=model.target_wrong_rate
        )
        self._signals = signals or SignalsCache()
        # Feedback is recorded as this model's probabilities, which mean nothing to another
        # model; the digest keeps persisted feedback apart per model file.
        canonical = json.dumps(model.to_json(), sort_keys=True).encode("utf-8")
        self.feedback_scale = "learned:" + hashlib.sha256(canonical).hexdigest()[:16]

    @property
    def model(self) -> PairScorer:
        return self._model

    @property
    def calibrator(self) -> NamespaceCalibrator:
        return self._calibrator

    def feedback_score(self, pair: Pair) -> float:
        return self.score(pair)

    def score(self, pair: Pair) -> float:
        return self._model.score_pair(
            pair, self._signals(pair.query), self._signals(pair.candidate)
        )

    def vetoed(self, pair: Pair) -> str:
        """The first veto check the pair fails, or ""."""
        if not self._model.vetoes:
            return ""
        found = mismatches(self._signals(pair.query), self._signals(pair.candidate))
        return next((check for check in self._model.vetoes if check in found), "")

    def verify(self, pair: Pair) -> Verdict:
        if pair.query == pair.candidate:
            return ACCEPT
        veto = self.vetoed(pair)
        if veto:
            return Verdict(False, veto, vetoed=True)
        if self.score(pair) >= self._calibrator.threshold(pair.namespace):
            return ACCEPT
        return Verdict(False, "learned")

    def record_feedback(self, pair: Pair, correct: bool) -> float | None:
        """A labelled outcome for this namespace's threshold (see calibration.py)."""
        score = self.score(pair)
        self._calibrator.record(pair.namespace, score, correct)
        return score


def _floats(values: Sequence[Any]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(v, 6) for v in values]

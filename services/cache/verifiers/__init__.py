"""Hit verifiers: second checks after the vector search (see services/cache/verify.py).

- `rules`: RuleVerifier rejects on a negation, opposite-word, number, date, unit, named-entity
  or answer-type mismatch (features.CHECKS).
- `learned`: LearnedVerifier scores the pair with the model in services/cache/verifier_model.json
  (pair_model.py: a small network on both MiniLM vectors and the text features; or the older
  logistic model over the text features alone, learned.py) against a per-namespace threshold
  calibrated from feedback (calibration.py).
- `none`: AcceptAll, the bare-threshold baseline.

Pure Python and numpy: no gRPC, no model weights, nothing downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from services.cache.verifiers.calibration import NamespaceCalibrator
from services.cache.verifiers.learned import (
    DEFAULT_MODEL_PATH,
    LearnedVerifier,
    LogisticModel,
    PairScorer,
)
from services.cache.verifiers.pair_model import PAIR_MODEL_FORMAT, PairModel
from services.cache.verifiers.rules import RuleVerifier
from services.cache.verify import AcceptAll, HitVerifier

VERIFIERS = ("none", "rules", "learned")


def load_model(path: Path = DEFAULT_MODEL_PATH) -> PairScorer:
    """The model file at `path`: a pair model (format /2) or a logistic model (format /1)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    try:
        if data.get("format") == PAIR_MODEL_FORMAT:
            return PairModel.from_json(data)
        return LogisticModel.from_json(data)
    except (KeyError, TypeError) as error:
        # A field missing or of the wrong type: refused like any other mismatched file.
        raise ValueError(f"{path} is not a usable model file: {error!r}") from None


def build_verifier(name: str, model_path: Path = DEFAULT_MODEL_PATH) -> HitVerifier:
    """The verifier called `name` (one of VERIFIERS); the learned one loads its model file."""
    if name == "none":
        return AcceptAll()
    if name == "rules":
        # Base 0: the cache's own cosine threshold decides until a namespace's reported
        # outcomes (ReportHit) are enough to set its own, higher or lower.
        return RuleVerifier(calibrator=NamespaceCalibrator(0.0))
    if name == "learned":
        return LearnedVerifier(load_model(model_path))
    raise ValueError(f"unknown verifier {name!r}; expected one of {', '.join(VERIFIERS)}")


__all__ = [
    "VERIFIERS",
    "LearnedVerifier",
    "LogisticModel",
    "PairModel",
    "RuleVerifier",
    "build_verifier",
    "load_model",
]

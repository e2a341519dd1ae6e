"""Hit verifiers: second checks after the vector search (see services/cache/verify.py).

- `rules`: RuleVerifier rejects on a negation, opposite-word, number, date, unit, named-entity
  or answer-type mismatch (features.CHECKS).
- `learned`: LearnedVerifier scores the same signals plus overlap measures with a logistic
  model loaded from services/cache/verifier_model.json, against a per-namespace threshold
  calibrated from feedback (calibration.py).
- `none`: AcceptAll, the bare-threshold baseline.

Pure Python and numpy: no gRPC, no model weights, nothing downloaded.
"""

from __future__ import annotations

from pathlib import Path

from services.cache.verifiers.learned import DEFAULT_MODEL_PATH, LearnedVerifier, LogisticModel
from services.cache.verifiers.rules import RuleVerifier
from services.cache.verify import AcceptAll, HitVerifier

VERIFIERS = ("none", "rules", "learned")


def build_verifier(name: str, model_path: Path = DEFAULT_MODEL_PATH) -> HitVerifier:
    """The verifier called `name` (one of VERIFIERS); the learned one loads its model file."""
    if name == "none":
        return AcceptAll()
    if name == "rules":
        return RuleVerifier()
    if name == "learned":
        return LearnedVerifier(LogisticModel.load(model_path))
    raise ValueError(f"unknown verifier {name!r}; expected one of {', '.join(VERIFIERS)}")


__all__ = ["VERIFIERS", "LearnedVerifier", "LogisticModel", "RuleVerifier", "build_verifier"]

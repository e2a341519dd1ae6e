"""Hit verifiers: second checks after the vector search (see services/cache/verify.py).

- `rules`: RuleVerifier rejects on a negation, opposite-word, number, date, unit, named-entity
  or answer-type mismatch (features.CHECKS).
- `learned`: LearnedVerifier scores the pair with the model in services/cache/verifier_model.json
  (pair_model.py: a small network on both MiniLM vectors and the text features; or the older
  logistic model over the text features alone, learned.py) against a per-namespace threshold
  calibrated from feedback (calibration.py).
- `crossenc`: CrossEncoderVerifier reads both questions together with a small cross-encoder
  (crossenc.py; the ONNX file services/cache/verifier_crossenc.onnx, trained by
  `python -m benchmarks.lookalike_train`) against a per-namespace threshold.
- `guarded`: GuardedVerifier (guarded.py) rejects a candidate that differs from the question
  in a word that decides the answer (vetoes.py: numbers, times, dates, units, entities,
  negation, direction and role order, comparatives, quantifiers, scope words) and lets the
  cross-encoder judge the rest.
- `banded`: BandedVerifier (guarded.py), the default: the same vetoes at every cosine; at
  0.90 and above nothing else, below it (down to the cache's floor, 0.82) the cross-encoder
  must agree too, at a bar of 0.6.
- `vetoes`: VetoVerifier (guarded.py): the same vetoes, with no model behind them; the cache's
  cosine threshold decides the rest, as for `rules`.
- `none`: AcceptAll, the bare-threshold baseline.

No gRPC and nothing downloaded; only `crossenc`, `guarded` and `banded` load model weights
(onnxruntime, from the repository's file).
"""

from __future__ import annotations

import json
from pathlib import Path

from services.cache.verifiers.calibration import NamespaceCalibrator
from services.cache.verifiers.crossenc import (
    DEFAULT_CROSSENC_PATH,
    CrossEncoder,
    CrossEncoderVerifier,
    VerifierFileError,
)
from services.cache.verifiers.guarded import BandedVerifier, GuardedVerifier, VetoVerifier
from services.cache.verifiers.learned import (
    DEFAULT_MODEL_PATH,
    LearnedVerifier,
    LogisticModel,
    PairScorer,
)
from services.cache.verifiers.pair_model import PAIR_MODEL_FORMAT, PairModel
from services.cache.verifiers.rules import RuleVerifier
from services.cache.verify import AcceptAll, HitVerifier

VERIFIERS = ("none", "rules", "learned", "crossenc", "guarded", "vetoes", "banded")


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


def build_verifier(
    name: str,
    model_path: Path = DEFAULT_MODEL_PATH,
    crossenc_path: Path = DEFAULT_CROSSENC_PATH,
) -> HitVerifier:
    """The verifier called `name` (one of VERIFIERS); `learned` loads its model file and
    `crossenc`, `guarded` and `banded` its ONNX file (VerifierFileError, naming the file, if it is
    missing or bad)."""
    if name == "none":
        return AcceptAll()
    if name == "rules":
        # Base 0: the cache's own cosine threshold decides until a namespace's reported
        # outcomes (ReportHit) are enough to set its own, higher or lower.
        return RuleVerifier(calibrator=NamespaceCalibrator(0.0))
    if name == "learned":
        return LearnedVerifier(load_model(model_path))
    if name == "crossenc":
        return CrossEncoderVerifier(CrossEncoder(crossenc_path))
    if name == "guarded":
        return GuardedVerifier.from_model(CrossEncoder(crossenc_path))
    if name == "vetoes":
        return VetoVerifier(calibrator=NamespaceCalibrator(0.0))
    if name == "banded":
        return BandedVerifier(CrossEncoder(crossenc_path), calibrator=NamespaceCalibrator(0.0))
    raise ValueError(f"unknown verifier {name!r}; expected one of {', '.join(VERIFIERS)}")


__all__ = [
    "DEFAULT_CROSSENC_PATH",
    "VERIFIERS",
    "BandedVerifier",
    "VetoVerifier",
    "CrossEncoder",
    "CrossEncoderVerifier",
    "VerifierFileError",
    "GuardedVerifier",
    "LearnedVerifier",
    "LogisticModel",
    "PairModel",
    "RuleVerifier",
    "build_verifier",
    "load_model",
]

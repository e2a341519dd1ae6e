"""The cross-encoder verifier: reads the asked and the stored question together.

A bi-encoder compares two vectors made apart, so "8 pm" and "8 am" land on nearly the same
point; a cross-encoder attends across both questions at once and can weigh the one word that
changes the answer. The model (train_crossenc.py: MiniLM's first layers plus a linear head,
fine-tuned on QQP, the look-alike set and generated hard negatives) is one ONNX file,
services/cache/verifier_crossenc.onnx, run with onnxruntime on the CPU; its settings (format,
threshold, token limit) are in the file's metadata.

It scores only the candidates the cache hands it (at most candidates.SEARCH_K, all above the
cosine floor), in one batch: `prepare` runs in a worker thread before the lookup's verification
loop (the cache awaits it, as it awaits the embedding), and `verify` then reads the scores it
left. A pair `prepare` did not see (the offline replay) is scored on the spot.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.cache.verifiers.calibration import NamespaceCalibrator
from services.cache.verify import ACCEPT, Pair, Verdict

CROSSENC_FORMAT = "sluice-cache-crossenc/1"
DEFAULT_CROSSENC_PATH = Path(__file__).resolve().parent.parent / "verifier_crossenc.onnx"
_MEMO = 4096  # scored pairs kept between prepare and verify (and for feedback of recent hits)


class VerifierFileError(ValueError):
    """The verifier file is missing, not an ONNX model, or not a cross-encoder of this format."""


@dataclass(frozen=True)
class CrossEncoderInfo:
    threshold: float  # probability to serve, chosen on the fit halves
    min_similarity: float  # the cosine floor it was trained and tuned behind
    max_tokens: int
    target_wrong_rate: float
    digest: str  # of the file, so feedback recorded under one model is not read as another's
    # The bar and cosine floor behind the vetoes (guarded.py), chosen on the fit halves by
    # benchmarks/cache_quality_crossenc.py --write; None in a file written before them.
    guarded_threshold: float | None = None
    guarded_min_similarity: float | None = None


class CrossEncoder:
    """The ONNX session and tokenizer: probabilities for (asked, stored) pairs."""

    def __init__(self, path: Path, *, threads: int = 1) -> None:
        self.path = path
        try:
            digest = _file_digest(path)
        except OSError as error:
            raise VerifierFileError(
                f"{path}: cannot read the verifier file ({error.strerror})"
            ) from None
        from shared.embedding.onnx import heap_trimmer, load_tokenizer, open_session

        try:
            # The embedder's lean session: from the path, not from the file's bytes held in
            # Python, with ORT's arena and memory patterns off (they keep a call's peak for the
            # life of the process), then the heap trimmed: the cache started 17 MB smaller and
            # held ~20 MB less after look-alike traffic. Scores are identical (a test checks).
            self._session = open_session(path, threads)
            meta = self._session.get_modelmeta().custom_metadata_map
        except Exception as error:  # onnxruntime raises its own, untyped, exception classes
            raise VerifierFileError(f"{path}: not a usable ONNX model ({error})") from None
        trim = heap_trimmer()
        if trim is not None:
            trim()  # loading parsed the whole model file; those copies are garbage now
        if meta.get("format") != CROSSENC_FORMAT:
            raise VerifierFileError(
                f"{path}: not a {CROSSENC_FORMAT} file (format={meta.get('format')!r})"
            )
        try:
            self.info = CrossEncoderInfo(
                threshold=float(meta["threshold"]),
                min_similarity=float(meta["min_similarity"]),
                max_tokens=int(meta["max_tokens"]),
                target_wrong_rate=float(meta.get("target_wrong_rate", "0.02")),
                digest=digest,
                guarded_threshold=_optional(meta, "guarded_threshold"),
                guarded_min_similarity=_optional(meta, "guarded_min_similarity"),
            )
        except (KeyError, ValueError) as error:
            raise VerifierFileError(f"{path}: metadata field missing or bad: {error}") from None
        self.trained_on: dict[str, Any] = json.loads(meta.get("trained_on", "{}"))
        self._tokenizer = load_tokenizer()
        self._tokenizer.enable_truncation(max_length=self.info.max_tokens)

    def scores(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """p(the stored answer serves the asked question), one per (asked, stored) pair."""
        if not pairs:
            return np.zeros(0)
        encodings = self._tokenizer.encode_batch(list(pairs))
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        logits = np.asarray(self._session.run(None, feeds)[0], dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-logits))


def _file_digest(path: Path) -> str:
    """The file's sha256 (16 hex digits), read in blocks rather than held whole."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()[:16]


def _optional(meta: dict[str, str], key: str) -> float | None:
    return float(meta[key]) if key in meta else None


class CrossEncoderVerifier:
    """Serves a candidate when the cross-encoder's probability reaches its namespace's bar.

    The bar starts at the file's threshold; the namespace calibrator (calibration.py) moves
    it with reported outcomes, exactly as for the learned pair model."""

    def __init__(
        self, model: CrossEncoder, *, calibrator: NamespaceCalibrator | None = None
    ) -> None:
        self._model = model
        self._calibrator = calibrator or NamespaceCalibrator(
            model.info.threshold, target_wrong_rate=model.info.target_wrong_rate
        )
        self._memo: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()
        self.feedback_scale = "crossenc:" + model.info.digest

    @property
    def model(self) -> CrossEncoder:
        return self._model

    @property
    def calibrator(self) -> NamespaceCalibrator:
        return self._calibrator

    def prepare(self, pairs: Sequence[Pair]) -> None:
        """Scores the pairs not yet scored, in one batch (call it off the event loop)."""
        with self._lock:
            todo = list(
                dict.fromkeys((p.query, p.candidate) for p in pairs if p.query != p.candidate)
            )
            todo = [key for key in todo if key not in self._memo]
        if not todo:
            return
        scores = self._model.scores(todo)
        with self._lock:
            for key, value in zip(todo, scores.tolist(), strict=True):
                self._memo[key] = value
            while len(self._memo) > _MEMO:
                self._memo.popitem(last=False)

    def score(self, pair: Pair) -> float:
        key = (pair.query, pair.candidate)
        with self._lock:
            found = self._memo.get(key)
        if found is None:
            self.prepare([pair])
            with self._lock:
                found = self._memo.get(key)
        return float(found) if found is not None else float(self._model.scores([key])[0])

    def feedback_score(self, pair: Pair) -> float:
        return self.score(pair)

    def vetoed(self, pair: Pair) -> str:
        return ""  # no check turns a candidate down whatever its score: the model decides

    def verify(self, pair: Pair) -> Verdict:
        if pair.query == pair.candidate:
            return ACCEPT
        if self.score(pair) >= self._calibrator.threshold(pair.namespace):
            return ACCEPT
        return Verdict(False, "crossenc")

    def record_feedback(self, pair: Pair, correct: bool) -> float | None:
        score = self.score(pair)
        self._calibrator.record(pair.namespace, score, correct)
        return score

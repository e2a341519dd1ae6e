"""The compressor's embedder: the shared all-MiniLM-L6-v2 backends behind an LRU of vectors.

The model code lives in shared/embedding (ONNX Runtime, with torch as the fallback when the
export or the session cannot be had). This module only adds what compression needs on top:
an LRU of chunk vectors, since a conversation resends its documents on every turn, and one
model call at a time, since a Compress request already hands the model hundreds of texts in one
batch and two such batches side by side on a 2-core pod would only slow each other down.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from shared.embedding.minilm import Embedder, Vectors, embed_in_length_runs
from shared.embedding.onnx import Backend, Variant, build_minilm

__all__ = ["CachedEmbedder", "Embedder", "build_embedder"]

# Texts per model call once sorted by length. Small, because the model pads a call to its
# longest text and a few long chunks among short ones are common; a call's own overhead is
# small next to that. On a cold 32k-token NQ page (one thread): 13.1 s with calls of 32,
# 9.4 s with 8, 8.9 s with 4; and under a 5 s deadline, 65, 258 and 267 of 969 chunks
# embedded, since a deadline-bound slice is too small for sorting to group like lengths.
SORTED_BATCH = 4


def build_embedder(
    backend: Backend,
    model_dir: Path,
    *,
    threads: int,
    cache_size: int,
    variant: Variant = "fp32",
) -> Embedder:
    """ONNX Runtime with torch as its fallback (or torch alone), wrapped in the vector LRU."""
    inner = build_minilm(backend, model_dir, threads=threads, variant=variant)
    return CachedEmbedder(inner, cache_size)


class CachedEmbedder:
    """Wraps an Embedder with an LRU of recent texts' vectors, and embeds each text once a call.

    A hit costs a dict lookup instead of model time. Keys are 16-byte digests, so memory is
    bounded by capacity * (16 + 4 * dim) bytes, ~16 MB for 10,000 MiniLM vectors, whatever the
    texts' lengths. Model calls are serialised (see the module docstring).
    """

    def __init__(self, inner: Embedder, capacity: int) -> None:
        self._inner = inner
        self._capacity = capacity
        self._vectors: OrderedDict[bytes, Vectors] = OrderedDict()
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def loaded(self) -> bool:
        return self._inner.loaded

    def load(self) -> None:
        self._inner.load()

    def embed(self, texts: Sequence[str]) -> Vectors:
        keys = [hashlib.blake2b(text.encode(), digest_size=16).digest() for text in texts]
        found: dict[bytes, Vectors] = {}
        with self._lock:
            for key in keys:
                if key in self._vectors:
                    self._vectors.move_to_end(key)
                    found[key] = self._vectors[key]
        missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in found}
        if missing:
            # Sorting by length cut a 32k-token page's embedding time several times over.
            fresh = embed_in_length_runs(
                self._embed_locked, list(missing.values()), SORTED_BATCH, self.dim
            )
            found.update(zip(missing, fresh, strict=True))
            self._remember(zip(missing, fresh, strict=True))
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[key] for key in keys])

    def _embed_locked(self, texts: list[str]) -> Vectors:
        with self._model_lock:
            return self._inner.embed(texts)

    def _remember(self, items: Iterable[tuple[bytes, Vectors]]) -> None:
        with self._lock:
            for key, vector in items:
                # A copy, so that a kept row does not pin its whole batch's array in memory.
                self._vectors[key] = vector.copy()
            while len(self._vectors) > self._capacity:
                self._vectors.popitem(last=False)

"""Vector indexes: one per cache namespace, searched by inner product on unit vectors.

FaissIndex is an exact (flat) index. At the per-namespace sizes the cache keeps (10k entries by
default) a flat search takes ~0.3 ms, so it runs on the event loop and returns the true nearest
neighbours; an approximate index (HNSW, IVF) can replace it behind VectorIndex when a namespace
grows to ~1M entries, where a flat search takes ~62 ms (DESIGN.md figures).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import faiss
import numpy as np
from numpy.typing import NDArray


class VectorIndex(Protocol):
    """A set of id-tagged unit vectors with nearest-neighbour search."""

    def __len__(self) -> int: ...

    def add(self, vector_id: int, vector: NDArray[np.float32]) -> None:
        """Adds one vector of shape (dim,) under vector_id."""

    def remove(self, vector_ids: Sequence[int]) -> None:
        """Removes the given ids; unknown ids are ignored."""

    def search(self, vector: NDArray[np.float32], k: int) -> list[tuple[int, float]]:
        """Returns up to k (id, inner product) pairs, best first."""


def limit_faiss_threads() -> None:
    """Pins FAISS to one OpenMP thread, once per process at start-up.

    With two threads and a busy neighbour core one flat query went from 0.3 ms to 16 ms
    (DESIGN.md); a single query on a small index gains nothing from threads anyway.
    """
    faiss.omp_set_num_threads(1)


class FaissIndex:
    """Exact inner-product search: IndexFlatIP wrapped in IndexIDMap2 for removable ids."""

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, vector_id: int, vector: NDArray[np.float32]) -> None:
        self._index.add_with_ids(self._rows(vector), np.array([vector_id], dtype=np.int64))

    def remove(self, vector_ids: Sequence[int]) -> None:
        if vector_ids:
            self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(vector_ids, dtype=np.int64)))

    def search(self, vector: NDArray[np.float32], k: int) -> list[tuple[int, float]]:
        if k <= 0 or self._index.ntotal == 0:
            return []
        scores, ids = self._index.search(self._rows(vector), min(k, self._index.ntotal))
        # FAISS pads missing neighbours with id -1.
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if int(i) != -1]

    def _rows(self, vector: NDArray[np.float32]) -> NDArray[np.float32]:
        rows = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        if rows.shape[1] != self._dim:
            raise ValueError(f"vector has dimension {rows.shape[1]}, index expects {self._dim}")
        return rows

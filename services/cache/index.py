"""Vector indexes: one per cache namespace, searched by inner product on unit vectors.

Two FAISS index kinds sit behind `VectorIndex`:

- FlatIndex: exact search (`IndexIDMap2(IndexFlatIP)`). Cost grows linearly with the number of
  vectors: ~0.3 ms at 10k, ~7 ms at 100k, ~62 ms at 1M (DESIGN.md figures).
- HnswIndex: approximate search (`IndexIDMap2(IndexHNSWFlat)`), ~1 ms whatever the size, but
  FAISS cannot remove vectors from an HNSW graph. Removed ids become tombstones: they stay in
  the graph (so it stays connected) and a search skips them through an `IDSelectorNot`, so they
  never take a slot in the results. AdaptiveIndex (adaptive.py) rebuilds the graph without
  them once they are a sizeable share of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import faiss
import numpy as np
from numpy.typing import NDArray

IndexKind = Literal["flat", "hnsw"]
Ids = NDArray[np.int64]
Matrix = NDArray[np.float32]


@dataclass(frozen=True)
class HnswParams:
    """HNSW construction and search parameters.

    The cache asks the index for near-duplicates (cosine >= ~0.85). Measured here on 50k random
    384-d unit vectors (the hard case: no cluster structure) with queries at cosine ~0.95 to
    their target, one thread: M=16 found the target 91% of the time at efSearch=64 and 98% at
    128; M=32 found it 99.4% at 64 and 100% at 128 (0.7 ms per search), for a build ~1.7x
    slower (0.26 ms per vector at 50k, 0.63 ms at 100k). A missed neighbour is a lost hit, so
    recall wins; builds run in the background (adaptive.py). benchmarks/cache_speed.py
    measures recall at each size (0.996 at 100k).
    """

    m: int = 32
    ef_construction: int = 40
    ef_search: int = 128


class VectorIndex(Protocol):
    """A set of id-tagged unit vectors with nearest-neighbour search."""

    @property
    def kind(self) -> IndexKind: ...

    def __len__(self) -> int:
        """The number of live (searchable) vectors."""

    def add_many(self, vector_ids: Ids, vectors: Matrix) -> None:
        """Adds rows of shape (n, dim) under new, never used ids."""

    def remove(self, vector_ids: Sequence[int]) -> None:
        """Removes ids that are present; callers never pass unknown or removed ids."""

    def search(self, vector: NDArray[np.float32], k: int) -> list[tuple[int, float]]:
        """Returns up to k (id, inner product) pairs of live vectors, best first."""

    def export(self) -> tuple[Ids, Matrix]:
        """The live ids and their vectors, copied, for building another index from them."""

    def vector(self, vector_id: int) -> NDArray[np.float32]:
        """A copy of one present id's vector (for the hit verifier's pair model)."""


def limit_faiss_threads() -> None:
    """Pins FAISS to one OpenMP thread, once per process at start-up.

    With two threads and a busy neighbour core one flat query went from 0.3 ms to 16 ms
    (DESIGN.md); a single query on a small index gains nothing from threads anyway.
    """
    faiss.omp_set_num_threads(1)


def rows(vector: NDArray[np.float32], dim: int) -> Matrix:
    matrix = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1, dim)
    if matrix.shape[1] != dim:
        raise ValueError(f"vector has dimension {matrix.shape[1]}, index expects {dim}")
    return matrix


def _results(scores: Matrix, ids: Ids) -> list[tuple[int, float]]:
    # FAISS pads missing neighbours with id -1.
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if int(i) != -1]


class FlatIndex:
    """Exact inner-product search: IndexFlatIP wrapped in IndexIDMap2 for removable ids."""

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._flat = faiss.IndexFlatIP(dim)
        self._index = faiss.IndexIDMap2(self._flat)

    @property
    def kind(self) -> IndexKind:
        return "flat"

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add_many(self, vector_ids: Ids, vectors: Matrix) -> None:
        self._index.add_with_ids(rows(vectors, self._dim), np.asarray(vector_ids, np.int64))

    def remove(self, vector_ids: Sequence[int]) -> None:
        # O(n) per call (the flat storage is compacted), which is why callers batch removals.
        if len(vector_ids):
            self._index.remove_ids(faiss.IDSelectorBatch(np.asarray(vector_ids, np.int64)))

    def search(self, vector: NDArray[np.float32], k: int) -> list[tuple[int, float]]:
        if k <= 0 or self._index.ntotal == 0:
            return []
        scores, ids = self._index.search(rows(vector, self._dim), min(k, self._index.ntotal))
        return _results(scores, ids)

    def export(self) -> tuple[Ids, Matrix]:
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        return ids, self._flat.reconstruct_n(0, self._flat.ntotal)

    def vector(self, vector_id: int) -> NDArray[np.float32]:
        # IndexIDMap2 keeps a reverse id map, so this is a lookup plus one row copy.
        return np.asarray(self._index.reconstruct(int(vector_id)), np.float32)


class HnswIndex:
    """Approximate inner-product search on an HNSW graph, with tombstones for removals."""

    def __init__(self, dim: int, params: HnswParams) -> None:
        self._dim = dim
        self._params = params
        self._hnsw = faiss.IndexHNSWFlat(dim, params.m, faiss.METRIC_INNER_PRODUCT)
        self._hnsw.hnsw.efConstruction = params.ef_construction
        self._hnsw.hnsw.efSearch = params.ef_search
        self._index = faiss.IndexIDMap2(self._hnsw)
        self._tombstones: set[int] = set()
        # Search parameters excluding the tombstones, rebuilt lazily after they change. The
        # Python objects of the selectors are kept because FAISS holds raw pointers to them.
        self._params_cache: tuple[Any, ...] | None = None

    @property
    def kind(self) -> IndexKind:
        return "hnsw"

    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self._tombstones)

    @property
    def graph_size(self) -> int:
        """Vectors in the graph, tombstones included."""
        return int(self._index.ntotal)

    @property
    def tombstones(self) -> int:
        return len(self._tombstones)

    def add_many(self, vector_ids: Ids, vectors: Matrix) -> None:
        self._index.add_with_ids(rows(vectors, self._dim), np.asarray(vector_ids, np.int64))

    def remove(self, vector_ids: Sequence[int]) -> None:
        if len(vector_ids):
            self._tombstones.update(int(i) for i in vector_ids)
            self._params_cache = None

    def search(self, vector: NDArray[np.float32], k: int) -> list[tuple[int, float]]:
        live = len(self)
        if k <= 0 or live == 0:
            return []
        scores, ids = self._index.search(
            rows(vector, self._dim), min(k, live), params=self._search_params()
        )
        return _results(scores, ids)

    def export(self) -> tuple[Ids, Matrix]:
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        vectors = self._hnsw.storage.reconstruct_n(0, self._hnsw.ntotal)
        if not self._tombstones:
            return ids, vectors
        keep = ~np.isin(ids, np.fromiter(self._tombstones, np.int64, len(self._tombstones)))
        return ids[keep], vectors[keep]

    def vector(self, vector_id: int) -> NDArray[np.float32]:
        # IndexIDMap2 keeps a reverse id map, so this is a lookup plus one row copy.
        return np.asarray(self._index.reconstruct(int(vector_id)), np.float32)

    def _search_params(self) -> Any:
        if not self._tombstones:
            return None
        if self._params_cache is None:
            removed = np.fromiter(self._tombstones, np.int64, len(self._tombstones))
            batch = faiss.IDSelectorBatch(removed)
            negated = faiss.IDSelectorNot(batch)
            # Missing from faiss's bundled type stubs, present at run time since 1.7.3.
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            params.sel = negated
            # Search parameters replace the index's own efSearch, so it is set again here.
            params.efSearch = self._params.ef_search
            self._params_cache = (params, negated, batch)
        return self._params_cache[0]


def new_index(kind: IndexKind, dim: int, params: HnswParams) -> FlatIndex | HnswIndex:
    return FlatIndex(dim) if kind == "flat" else HnswIndex(dim, params)

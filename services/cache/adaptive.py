"""A namespace's index that moves between exact and approximate search as the namespace grows.

A namespace starts with a FlatIndex: exact, cheap to change, and fast while small. Past
`ann_threshold` live vectors it moves to an HnswIndex; it moves back below half the threshold
(the gap keeps a namespace hovering at the threshold from rebuilding back and forth). An HNSW
index is also rebuilt once tombstones (removed vectors FAISS cannot delete from the graph) make
up `compact_ratio` of it, which bounds both the wasted memory and the search work they cost.

Rebuilding never blocks lookups or stores:

1. On the event loop, the live ids and vectors are copied out of the current index (a memcpy:
   ~10 ms at 20k vectors), and a journal starts recording every later add and remove.
2. In a worker thread, a fresh index is built from the copy. FAISS releases the GIL, so the
   loop keeps serving from the current index, which stays complete and correct.
3. The journal is replayed into the fresh index, in the thread while it is long and on the
   loop for its last few entries, and the fresh index replaces the current one. Replaying in
   order makes the result equal to the current index's contents at the moment of the swap.

While both exist, memory holds two copies of the namespace's vectors.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from services.cache.index import (
    FlatIndex,
    HnswIndex,
    HnswParams,
    IndexKind,
    Matrix,
    VectorIndex,
    new_index,
)

# Journal entries short enough to replay on the event loop when swapping (HNSW inserts cost
# ~0.5 ms each, so this bounds the pause to a few tens of ms).
REPLAY_ON_LOOP_MAX = 64
# Vectors per FAISS add call during a build: ~1 s of HNSW inserts, the longest a cancelled
# build (shutdown) keeps its thread busy, since FAISS calls cannot be interrupted.
BUILD_CHUNK = 2048
# Below this many tombstones a compaction is not worth a rebuild, whatever the ratio.
MIN_TOMBSTONES = 256

Ids = NDArray[np.int64]
_Op = tuple[Ids, Matrix] | list[int]


@dataclass(frozen=True)
class IndexPolicy:
    # Live vectors above which a namespace uses HNSW instead of exact search. At 20k a flat
    # search costs ~0.6 ms, still fine on the event loop; HNSW pays off from there on.
    ann_threshold: int = 20_000
    # Share of an HNSW graph's vectors that may be tombstones before it is rebuilt.
    compact_ratio: float = 0.2
    hnsw: HnswParams = field(default_factory=HnswParams)


class AdaptiveIndex:
    """A VectorIndex that switches between flat and HNSW and compacts HNSW tombstones."""

    def __init__(self, dim: int, policy: IndexPolicy) -> None:
        self._dim = dim
        self._policy = policy
        self._current: FlatIndex | HnswIndex = FlatIndex(dim)
        # Mutations since the snapshot of a running rebuild; None when none runs.
        self._journal: list[_Op] | None = None
        self.rebuilds = 0

    @property
    def kind(self) -> IndexKind:
        return self._current.kind

    @property
    def rebuilding(self) -> bool:
        return self._journal is not None

    def __len__(self) -> int:
        return len(self._current)

    def add_many(self, vector_ids: Ids, vectors: Matrix) -> None:
        self._current.add_many(vector_ids, vectors)
        if self._journal is not None:
            self._journal.append((np.array(vector_ids, np.int64), np.array(vectors, np.float32)))

    def remove(self, vector_ids: Sequence[int]) -> None:
        self._current.remove(vector_ids)
        if self._journal is not None and len(vector_ids):
            self._journal.append([int(i) for i in vector_ids])

    def search(self, vector: NDArray[np.float32], k: int) -> list[tuple[int, float]]:
        return self._current.search(vector, k)

    def export(self) -> tuple[Ids, Matrix]:
        return self._current.export()

    def vector(self, vector_id: int) -> NDArray[np.float32]:
        return self._current.vector(vector_id)

    def rebuild_due(self) -> bool:
        """True when the size calls for the other kind, or HNSW tombstones need compacting."""
        if self._journal is not None:
            return False
        if self._target_kind() != self._current.kind:
            return True
        current = self._current
        return isinstance(current, HnswIndex) and current.tombstones >= max(
            MIN_TOMBSTONES, self._policy.compact_ratio * current.graph_size
        )

    async def rebuild(self) -> None:
        """Builds the index the size calls for off the event loop, then swaps it in."""
        if self._journal is not None:
            return
        target = self._target_kind()
        ids, vectors = self._current.export()
        self._journal = []
        abort = threading.Event()
        try:
            built = await asyncio.to_thread(self._build, target, ids, vectors, abort)
            while len(self._journal) > REPLAY_ON_LOOP_MAX:
                chunk, self._journal = self._journal, []
                await asyncio.to_thread(_replay, built, chunk)
            _replay(built, self._journal)
            self._current = built
            self.rebuilds += 1
        except asyncio.CancelledError:
            # The thread outlives the cancelled await; tell it to stop at its next chunk, so
            # that shutting down does not wait for a whole graph build.
            abort.set()
            raise
        finally:
            self._journal = None

    def _target_kind(self) -> IndexKind:
        live = len(self._current)
        threshold = self._policy.ann_threshold
        if self._current.kind == "flat":
            return "hnsw" if live > threshold else "flat"
        return "flat" if live < threshold // 2 else "hnsw"

    def _build(
        self, kind: IndexKind, ids: Ids, vectors: Matrix, abort: threading.Event
    ) -> FlatIndex | HnswIndex:
        # Runs in a worker thread and touches nothing but its arguments and the new index.
        index = new_index(kind, self._dim, self._policy.hnsw)
        for start in range(0, len(ids), BUILD_CHUNK):
            if abort.is_set():
                break  # nobody waits for the result any more
            end = start + BUILD_CHUNK
            index.add_many(ids[start:end], vectors[start:end])
        return index


def _replay(index: VectorIndex, journal: list[_Op]) -> None:
    for op in journal:
        if isinstance(op, list):
            index.remove(op)
        else:
            index.add_many(*op)

"""Flat and HNSW indexes, tombstones, and the adaptive switch between them."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.cache.adaptive import MIN_TOMBSTONES, AdaptiveIndex, IndexPolicy
from services.cache.index import FlatIndex, HnswIndex, HnswParams

DIM = 32


def unit_vectors(count: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def kind(index: AdaptiveIndex) -> str:
    # A plain str, so the type checker does not narrow the property across rebuilds.
    return index.kind


def ids(start: int, count: int) -> np.ndarray:
    return np.arange(start, start + count, dtype=np.int64)


@pytest.mark.parametrize("make", [lambda: FlatIndex(DIM), lambda: HnswIndex(DIM, HnswParams())])
def test_search_finds_the_vector_itself_first(make):
    index = make()
    vectors = unit_vectors(200)
    index.add_many(ids(1, 200), vectors)
    assert len(index) == 200
    for row in (0, 57, 199):
        best_id, score = index.search(vectors[row], 3)[0]
        assert best_id == row + 1
        assert score == pytest.approx(1.0, abs=1e-5)


def test_hnsw_removals_are_tombstones_that_search_never_returns():
    index = HnswIndex(DIM, HnswParams())
    vectors = unit_vectors(300)
    index.add_many(ids(1, 300), vectors)
    index.remove([1, 2, 3])
    assert len(index) == 297
    assert index.tombstones == 3
    assert index.graph_size == 300
    found = [vector_id for vector_id, _ in index.search(vectors[0], 10)]
    assert len(found) == 10
    assert not {1, 2, 3} & set(found)
    exported_ids, exported = index.export()
    assert not {1, 2, 3} & set(exported_ids.tolist())
    np.testing.assert_array_equal(exported, vectors[3:])


def test_hnsw_with_every_vector_removed_finds_nothing():
    index = HnswIndex(DIM, HnswParams())
    index.add_many(ids(1, 5), unit_vectors(5))
    index.remove([1, 2, 3, 4, 5])
    assert index.search(unit_vectors(1)[0], 3) == []


def test_flat_removal_is_real():
    index = FlatIndex(DIM)
    vectors = unit_vectors(10)
    index.add_many(ids(1, 10), vectors)
    index.remove([1])
    assert len(index) == 9
    assert index.search(vectors[0], 1)[0][0] != 1


async def test_namespace_switches_to_hnsw_past_the_threshold_and_back():
    index = AdaptiveIndex(DIM, IndexPolicy(ann_threshold=100))
    vectors = unit_vectors(150)
    index.add_many(ids(1, 100), vectors[:100])
    assert kind(index) == "flat" and not index.rebuild_due()
    index.add_many(ids(101, 50), vectors[100:])
    assert index.rebuild_due()
    await index.rebuild()
    assert kind(index) == "hnsw" and len(index) == 150
    assert index.search(vectors[120], 1)[0][0] == 121
    # Hysteresis: back to exact search only below half the threshold.
    index.remove(list(range(1, 80)))
    assert len(index) == 71
    assert not index.rebuild_due()
    index.remove(list(range(80, 110)))
    assert len(index) == 41
    assert index.rebuild_due()
    await index.rebuild()
    assert kind(index) == "flat" and len(index) == 41
    assert index.search(vectors[140], 1)[0][0] == 141


async def test_mutations_during_a_rebuild_are_replayed_into_the_new_index():
    index = AdaptiveIndex(DIM, IndexPolicy(ann_threshold=50))
    vectors = unit_vectors(400)
    index.add_many(ids(1, 300), vectors[:300])
    rebuild = asyncio.ensure_future(index.rebuild())
    await asyncio.sleep(0)  # the snapshot is taken; the build runs in a thread
    assert index.rebuilding
    for offset in range(300, 400):
        index.add_many(ids(offset + 1, 1), vectors[offset : offset + 1])
    index.remove([1, 2, 350])
    await rebuild
    assert kind(index) == "hnsw" and not index.rebuilding
    assert len(index) == 397
    exported_ids, _ = index.export()
    assert set(exported_ids.tolist()) == set(range(1, 401)) - {1, 2, 350}
    assert index.search(vectors[398], 1)[0][0] == 399


async def test_hnsw_is_compacted_once_tombstones_pile_up():
    policy = IndexPolicy(ann_threshold=100, compact_ratio=0.2)
    index = AdaptiveIndex(DIM, policy)
    count = 2 * MIN_TOMBSTONES
    index.add_many(ids(1, count), unit_vectors(count))
    await index.rebuild()
    assert kind(index) == "hnsw"
    index.remove(list(range(1, MIN_TOMBSTONES)))
    assert not index.rebuild_due()  # 255 tombstones: below MIN_TOMBSTONES
    index.remove([MIN_TOMBSTONES])
    assert index.rebuild_due()
    await index.rebuild()
    assert kind(index) == "hnsw" and index.rebuilds == 2
    assert len(index) == count - MIN_TOMBSTONES
    exported_ids, _ = index.export()
    assert exported_ids.min() == MIN_TOMBSTONES + 1


async def test_a_cancelled_rebuild_keeps_the_old_index():
    index = AdaptiveIndex(DIM, IndexPolicy(ann_threshold=10))
    index.add_many(ids(1, 20_000), unit_vectors(20_000))
    rebuild = asyncio.ensure_future(index.rebuild())
    await asyncio.sleep(0.05)
    rebuild.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rebuild
    assert kind(index) == "flat" and not index.rebuilding and len(index) == 20_000
    assert index.search(unit_vectors(20_000)[5], 1)[0][0] == 6
    # A later rebuild starts from a clean state.
    assert index.rebuild_due()

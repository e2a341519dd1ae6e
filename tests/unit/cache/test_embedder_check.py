"""A store's vectors are never compared with another embedder's: the cache re-embeds the
stored queries or refuses to start, and records which embedder made what it holds."""

from __future__ import annotations

import numpy as np
import pytest

from services.cache.embedder_check import UNRECORDED, EmbedderMismatch, reconcile
from services.cache.records import CachedAnswer, EntryRecord
from services.cache.store import MemoryStore
from services.cache.store_sqlite import SqliteStore
from tests.unit.cache.fakes import HashingEmbedder

DIM = 16
FP32 = "all-MiniLM-L6-v2@0123456789abcdef/fp32"
INT8 = "all-MiniLM-L6-v2@0123456789abcdef/int8"


def record(entry_id: str, query: str | None) -> EntryRecord:
    return EntryRecord(
        entry_id=entry_id,
        tenant_id="acme",
        exact_key=f"exact-{entry_id}",
        namespace="ns-1",
        query=query,
        answer=CachedAnswer("Paris.", "gpt-4o-mini"),
        created_at=1000.0,
        expires_at=2000.0,
        vector=None if query is None else np.full(DIM, 0.25, dtype=np.float32),
    )


async def stored(store) -> dict[str, EntryRecord]:
    return {r.entry_id: r async for batch in store.load(DIM) for r in batch}


@pytest.fixture(params=["memory", "sqlite"])
async def store(request, tmp_path):
    opened = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "cache.db")
    await opened.open()
    await opened.put(record("a", "What is the capital of France?"), None)
    await opened.put(record("b", "Who wrote Hamlet?"), None)
    await opened.put(record("c", None), None)  # exact-only: no vector to re-embed
    yield opened
    await opened.close()


async def test_the_same_embedder_changes_nothing(store):
    await store.set_embedder(INT8)
    embedder = HashingEmbedder(DIM)
    assert await reconcile(store, INT8, "refuse", embedder.embed, DIM) == 0
    assert embedder.batches == []


async def test_an_unrecorded_store_is_adopted_by_the_fp32_embedder(store):
    assert await store.embedder() is None
    assert await reconcile(store, FP32, "refuse", HashingEmbedder(DIM).embed, DIM) == 0
    assert await store.embedder() == FP32


async def test_refuse_names_both_embedders_and_leaves_the_store_alone(store):
    await store.set_embedder(FP32)
    with pytest.raises(EmbedderMismatch) as raised:
        await reconcile(store, INT8, "refuse", HashingEmbedder(DIM).embed, DIM)
    message = str(raised.value)
    assert FP32 in message and INT8 in message and "SLUICE_CACHE_EMBEDDER_MISMATCH" in message
    assert await store.embedder() == FP32
    vector = (await stored(store))["a"].vector
    assert vector is not None and float(vector[0]) == 0.25


async def test_an_unrecorded_store_with_vectors_is_a_mismatch_for_int8(store):
    with pytest.raises(EmbedderMismatch, match="unrecorded"):
        await reconcile(store, INT8, "refuse", HashingEmbedder(DIM).embed, DIM)
    assert UNRECORDED.startswith("an unrecorded")


async def test_reembed_rewrites_every_query_vector_then_records_the_embedder(store):
    await store.set_embedder(FP32)
    embedder = HashingEmbedder(DIM)
    assert await reconcile(store, INT8, "reembed", embedder.embed, DIM) == 2
    assert await store.embedder() == INT8
    after = await stored(store)
    assert set(after) == {"a", "b", "c"}
    for entry_id in ("a", "b"):
        expected = HashingEmbedder(DIM).embed([after[entry_id].query or ""])[0]
        np.testing.assert_array_equal(after[entry_id].vector, expected)
    assert after["c"].vector is None
    # Done once: the next start finds its own identity and embeds nothing.
    assert await reconcile(store, INT8, "reembed", embedder.embed, DIM) == 0
    assert len(embedder.batches) == 1

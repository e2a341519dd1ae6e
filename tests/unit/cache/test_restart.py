"""Loading from the entry store at start, following other replicas, and store failures."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from services.cache.model import HitKind
from services.cache.records import CachedAnswer, EntryRecord
from services.cache.store import EntryDeleted, EntryPut, MemoryStore, Resynced, StoreUnavailable
from services.cache.store_sqlite import SqliteStore
from shared.errors import NotReady, Unavailable
from tests.unit.cache.fakes import FakeClock, HashingEmbedder, answer, ask, make_cache

QUESTION = "what is the capital of france"
PARAPHRASE = "what is the capital of france please"


async def test_entries_survive_a_restart_without_re_embedding(tmp_path):
    clock = FakeClock()
    path = tmp_path / "cache.db"
    first = await make_cache(store=SqliteStore(path), clock=clock, min_similarity=0.9)
    stored = await first.store(ask(QUESTION), answer("Paris."), tags=["geo"])
    await first.store(ask("short lived"), answer(), ttl_s=5)
    await first.aclose()

    clock.advance(10)
    embedder = HashingEmbedder()
    second = await make_cache(
        store=SqliteStore(path), clock=clock, embedder=embedder, min_similarity=0.9
    )
    assert embedder.batches == [], "stored vectors are loaded, not recomputed"
    assert len(second) == 1  # the expired entry was dropped at load
    exact = await second.lookup(ask(QUESTION))
    assert (exact.kind, exact.entry_id, exact.answer) == (
        HitKind.EXACT,
        stored.entry_id,
        answer("Paris."),
    )
    assert (await second.lookup(ask(PARAPHRASE))).entry_id == stored.entry_id
    from services.cache.model import TagTarget

    assert await second.invalidate("acme", TagTarget("geo")) == 1
    await second.aclose()
    third = await make_cache(store=SqliteStore(path), clock=clock)
    assert len(third) == 0, "invalidation is durable"
    await third.aclose()


async def test_stored_vectors_of_the_wrong_dimension_are_skipped_and_counted(tmp_path, caplog):
    path = tmp_path / "cache.db"
    old = await make_cache(store=SqliteStore(path), embedder=HashingEmbedder(dim=256))
    await old.store(ask(QUESTION), answer())
    await old.store(ask("exact only", history=()), answer())
    await old.aclose()
    cache = await make_cache(store=SqliteStore(path), embedder=HashingEmbedder(dim=512))
    assert len(cache) == 0
    assert cache.stats("acme").counters.skipped_bad_vectors == 2
    assert cache.stats(None).counters.skipped_bad_vectors == 2
    assert "dimension 512" in caplog.text and "skipped stored entry" in caplog.text
    await cache.aclose()


async def test_not_ready_until_loaded():
    cache = await make_cache(start=False)
    with pytest.raises(NotReady, match="stored entries"):
        await cache.lookup(ask(QUESTION))
    await cache.start()
    assert cache.ready


async def test_a_failed_store_write_is_unavailable_and_changes_nothing():
    class BrokenStore(MemoryStore):
        async def put(self, record, replaces):
            raise StoreUnavailable("disk full")

    cache = await make_cache(store=BrokenStore())
    with pytest.raises(Unavailable, match="disk full"):
        await cache.store(ask(QUESTION), answer())
    assert len(cache) == 0


class ScriptedStore(MemoryStore):
    """A shared store whose change feed the test drives."""

    def __init__(self) -> None:
        super().__init__()
        self.feed: asyncio.Queue = asyncio.Queue()

    async def changes(self, dim):
        while True:
            yield await self.feed.get()


def remote(entry_id: str, question: str, created_at: float, content: str) -> EntryRecord:
    vector = HashingEmbedder().embed([question])[0]
    return EntryRecord(
        entry_id=entry_id,
        tenant_id="acme",
        exact_key=_keys(question).exact,
        namespace=_keys(question).namespace,
        query=question,
        answer=CachedAnswer(content, "gpt-4o-mini"),
        created_at=created_at,
        expires_at=created_at + 3600,
        vector=vector,
    )


def _keys(question: str):
    from services.cache.keys import request_keys

    request = ask(question)
    return request_keys(request.tenant_id, request.model_class, request.turns, request.sampling)


async def test_other_replicas_changes_are_applied_newest_first():
    store = ScriptedStore()
    clock = FakeClock()
    cache = await make_cache(store=store, clock=clock, min_similarity=0.9)
    now = clock.now
    await store.feed.put(EntryPut(remote("r1", QUESTION, now, "from replica B")))
    await asyncio.sleep(0.01)
    assert (await cache.lookup(ask(PARAPHRASE))).entry_id == "r1"
    # An older write of the same request loses; a newer one wins.
    await store.feed.put(EntryPut(remote("r0", QUESTION, now - 5, "older")))
    await store.feed.put(EntryPut(remote("r2", QUESTION, now + 5, "newer")))
    await asyncio.sleep(0.01)
    assert len(cache) == 1
    assert (await cache.lookup(ask(QUESTION))).entry_id == "r2"
    await store.feed.put(EntryDeleted("r2"))
    await asyncio.sleep(0.01)
    assert len(cache) == 0
    await store.feed.put(EntryPut(remote("r3", "another question", now, "x")))
    await store.feed.put(Resynced([remote("r4", QUESTION, now, "after a gap")]))
    await asyncio.sleep(0.01)
    assert cache.stats(None).entries == 1, "the resync dropped r3, which the store lacks"
    assert (await cache.lookup(ask(QUESTION))).entry_id == "r4"
    await cache.aclose()


async def test_a_followed_entry_with_a_bad_vector_is_counted():
    store = ScriptedStore()
    cache = await make_cache(store=store)
    bad = dataclasses.replace(
        remote("r1", QUESTION, 1e6, "x"), vector=np.zeros(3, dtype=np.float32)
    )
    await store.feed.put(EntryPut(bad))
    await asyncio.sleep(0.01)
    assert len(cache) == 0
    assert cache.stats("acme").counters.skipped_bad_vectors == 1
    await cache.aclose()

"""Feedback counts (ReportHit outcomes) in the SQLite and memory stores."""

from __future__ import annotations

import sqlite3

from services.cache.store import FeedbackCount, MemoryStore
from services.cache.store_sqlite import SqliteStore


async def test_sqlite_counts_add_up_per_scale_namespace_and_bin_and_survive_reopening(tmp_path):
    path = tmp_path / "cache.db"
    store = SqliteStore(path)
    await store.open()
    for wrong in (False, True, False):
        await store.add_feedback("cosine", "ns-1", 925, wrong)
    await store.add_feedback("cosine", "ns-2", 10, True)
    await store.add_feedback("learned:abc", "ns-1", 925, False)
    await store.close()

    reopened = SqliteStore(path)
    await reopened.open()
    try:
        assert await reopened.load_feedback("cosine") == [
            FeedbackCount("cosine", "ns-1", 925, seen=3, wrong=1),
            FeedbackCount("cosine", "ns-2", 10, seen=1, wrong=1),
        ]
        assert await reopened.load_feedback("learned:abc") == [
            FeedbackCount("learned:abc", "ns-1", 925, seen=1, wrong=0)
        ]
        assert await reopened.load_feedback("learned:other") == []
    finally:
        await reopened.close()


async def test_a_file_from_before_the_feedback_table_gains_it_in_place(tmp_path):
    path = tmp_path / "cache.db"
    old = sqlite3.connect(path)
    old.execute("PRAGMA journal_mode = WAL")
    old.execute(
        "CREATE TABLE entries (entry_id TEXT PRIMARY KEY, exact_key TEXT NOT NULL UNIQUE, "
        "namespace TEXT NOT NULL, tenant_id TEXT NOT NULL, meta BLOB NOT NULL, vector BLOB, "
        "created_at REAL NOT NULL, expires_at REAL NOT NULL)"
    )
    old.execute("PRAGMA user_version = 1")
    old.commit()
    old.close()
    store = SqliteStore(path)
    await store.open()
    try:
        await store.add_feedback("cosine", "ns-1", 5, False)
        assert await store.load_feedback("cosine") == [FeedbackCount("cosine", "ns-1", 5, 1, 0)]
    finally:
        await store.close()


async def test_memory_store_counts_the_same_way():
    store = MemoryStore()
    await store.add_feedback("cosine", "ns-1", 925, True)
    await store.add_feedback("cosine", "ns-1", 925, False)
    assert await store.load_feedback("cosine") == [FeedbackCount("cosine", "ns-1", 925, 2, 1)]
    assert await store.load_feedback("other") == []

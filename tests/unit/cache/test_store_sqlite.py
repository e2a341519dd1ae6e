"""SqliteStore: round trips, replacement, group commit, bad vectors and corrupt files."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from services.cache.records import BadRecord, CachedAnswer, EntryRecord
from services.cache.store import StoreCorrupt
from services.cache.store_sqlite import SqliteStore
from shared.chat import Finish
from shared.pricing import TokenUsage

DIM = 8


def record(entry_id: str, exact_key: str = "", *, dim: int = DIM, tags=("doc:1",)) -> EntryRecord:
    vector = (np.arange(dim) / 10).astype(np.float32)
    return EntryRecord(
        entry_id=entry_id,
        tenant_id="acme",
        exact_key=exact_key or f"exact-{entry_id}",
        namespace="ns-1",
        query="What is the capital of France?",
        answer=CachedAnswer("Paris.", "gpt-4o-mini", TokenUsage(12, 3, 1), Finish.LENGTH),
        created_at=1000.5,
        expires_at=2000.25,
        tags=tuple(tags),
        vector=vector,
    )


async def loaded(store: SqliteStore, dim: int = DIM) -> list:
    return [item async for batch in store.load(dim) for item in batch]


async def reopened(path: Path, dim: int = DIM) -> list:
    store = SqliteStore(path)
    await store.open()
    try:
        return await loaded(store, dim)
    finally:
        await store.close()


async def test_round_trip_keeps_every_field(tmp_path):
    store = SqliteStore(tmp_path / "sub" / "cache.db")
    await store.open()
    original = record("a")
    await store.put(original, None)
    await store.close()
    [back] = await reopened(tmp_path / "sub" / "cache.db")
    assert isinstance(back, EntryRecord)
    np.testing.assert_array_equal(back.vector, original.vector)
    assert back.vector is not None and back.vector.dtype == np.float32
    assert {**back.__dict__, "vector": None} == {**original.__dict__, "vector": None}


async def test_exact_only_entries_have_no_vector(tmp_path):
    store = SqliteStore(tmp_path / "cache.db")
    await store.open()
    await store.put(EntryRecord(**{**record("a").__dict__, "query": None, "vector": None}), None)
    [back] = await loaded(store)
    await store.close()
    assert back.vector is None and back.query is None


async def test_put_replaces_the_entry_of_the_same_exact_key_and_delete_removes(tmp_path):
    store = SqliteStore(tmp_path / "cache.db")
    await store.open()
    await store.put(record("a", "same"), None)
    await store.put(record("b", "same"), "a")
    await store.put(record("c", "other"), None)
    assert sorted(r.entry_id for r in await loaded(store)) == ["b", "c"]
    # Even without naming it, an entry of the same request is replaced (UNIQUE exact_key).
    await store.put(record("d", "other"), None)
    await store.delete(["b", "unknown"])
    assert [r.entry_id for r in await loaded(store)] == ["d"]
    await store.close()


async def test_concurrent_puts_share_commits(tmp_path):
    store = SqliteStore(tmp_path / "cache.db", sync="full")
    await store.open()
    await asyncio.gather(*(store.put(record(str(n)), None) for n in range(50)))
    assert len(await loaded(store)) == 50
    assert store.commits < 50
    await store.close()


async def test_wrong_dimension_vectors_come_back_as_bad_records(tmp_path):
    store = SqliteStore(tmp_path / "cache.db")
    await store.open()
    await store.put(record("good"), None)
    await store.put(record("short", dim=DIM - 1), None)
    items = {item.entry_id: item for item in await loaded(store)}
    await store.close()
    assert isinstance(items["good"], EntryRecord)
    bad = items["short"]
    assert isinstance(bad, BadRecord)
    assert bad.tenant_id == "acme" and "dimension" in bad.reason


async def test_a_file_that_is_not_a_database_is_refused_by_name(tmp_path):
    path = tmp_path / "cache.db"
    path.write_bytes(b"this is not a database, just text " * 200)
    store = SqliteStore(path)
    with pytest.raises(StoreCorrupt, match=str(path)):
        await store.open()
    await store.close()


async def test_a_damaged_page_is_refused_by_name(tmp_path):
    path = tmp_path / "cache.db"
    store = SqliteStore(path)
    await store.open()
    for n in range(200):
        await store.put(record(str(n)), None)
    await store.close()
    # Fold the WAL into the main file, then overwrite a page in the middle of the table.
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    data[3 * page : 4 * page] = b"\xff" * page
    path.write_bytes(bytes(data))
    broken = SqliteStore(path)
    with pytest.raises(StoreCorrupt, match=rf"{path}.*corrupt|{path}.*malformed"):
        await broken.open()
    await broken.close()


async def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "cache.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")
    store = SqliteStore(path)
    with pytest.raises(StoreCorrupt, match="schema version 99"):
        await store.open()
    await store.close()

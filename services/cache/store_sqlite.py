"""SqliteStore: the embedded default entry store, one SQLite file in WAL mode.

Durability. A Store is acknowledged only after its transaction has committed. In WAL mode a
commit appends to the -wal file; the process can then die (kill -9, OOM, crash) and the next
open replays it, so acknowledged entries survive any process failure. `synchronous` decides
what survives a power loss or kernel crash:

- NORMAL (default): the WAL is fsynced at checkpoints, not at every commit. A power loss can
  roll back the last commits, never corrupt the file. Measured here: ~0.03 ms per commit.
- FULL: every commit is fsynced before it returns; nothing acknowledged is lost even to a
  power cut. Measured here: ~4 ms p50, ~16 ms p99 per commit.

For a cache, a lost entry costs one future miss and never a wrong answer, so NORMAL is the
default; SLUICE_CACHE_SQLITE_SYNC=full buys power-loss durability (see benchmarks/cache_speed.py
for the measured Store throughput of each).

Threading. sqlite3 calls block, so every call runs on one dedicated thread that owns the
connection. Writes queue up and that thread commits whatever has queued in one transaction
(group commit), so concurrent Stores share one commit (and one fsync under FULL).

Corruption. `open` runs `PRAGMA quick_check`; a file that is not a database or fails the check
raises StoreCorrupt naming the file, and the service refuses to start rather than silently
moving the file aside: the operator decides whether to delete it, keep it for diagnosis, or
restore a copy, and a crash-looping pod says why in its log.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import orjson

from services.cache.records import EntryRecord, meta_of, record_from_meta, vector_blob
from services.cache.store import (
    Change,
    FeedbackCount,
    Loaded,
    StoreCorrupt,
    StoreUnavailable,
)

SyncMode = Literal["normal", "full"]
SCHEMA_VERSION = 1
LOAD_BATCH = 4096
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    entry_id   TEXT PRIMARY KEY,
    exact_key  TEXT NOT NULL UNIQUE,
    namespace  TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    meta       BLOB NOT NULL,  -- JSON: query, answer, usage, tags, times (records.meta_of)
    vector     BLOB,           -- float32 little-endian; NULL for exact-only entries
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
-- Labelled outcomes of served hits (ReportHit) per namespace and score bin, for the
-- per-namespace verification thresholds. Added without a schema version bump: CREATE ... IF
-- NOT EXISTS upgrades a version-1 file in place, and older code ignores the table.
CREATE TABLE IF NOT EXISTS feedback (
    scale      TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    bin        INTEGER NOT NULL,
    seen       INTEGER NOT NULL,
    wrong      INTEGER NOT NULL,
    PRIMARY KEY (scale, namespace, bin)
);
-- Facts about the whole file; `embedder` names the embedder that made every stored vector
-- (added the same way as feedback: older files gain the table, older code ignores it).
CREATE TABLE IF NOT EXISTS store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
_Write = Callable[[sqlite3.Connection], None]


class SqliteStore:
    """Entries in one SQLite file, written by one thread."""

    def __init__(self, path: Path, *, sync: SyncMode = "normal") -> None:
        self._path = path
        self._sync = sync
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        self._connection: sqlite3.Connection | None = None
        self._queue: deque[tuple[_Write, asyncio.Future[None]]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0  # observability for tests and the benchmark

    @property
    def description(self) -> str:
        return f"sqlite:///{self._path}"

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._run(self._open)

    async def load(self, dim: int) -> AsyncIterator[list[Loaded]]:
        # Keyset pages rather than one open cursor, so that writes (deletes of expired
        # entries) can run between pages.
        after = 0
        while True:
            rows = await self._run(functools.partial(_page, after=after))
            if not rows:
                return
            after = rows[-1][0]
            yield [record_from_meta(orjson.loads(meta), blob, dim) for _, meta, blob in rows]

    async def put(self, record: EntryRecord, replaces: str | None) -> None:
        meta = meta_of(record)
        row = (
            record.entry_id,
            record.exact_key,
            record.namespace,
            record.tenant_id,
            orjson.dumps(meta),
            vector_blob(record),
            record.created_at,
            record.expires_at,
        )

        def write(connection: sqlite3.Connection) -> None:
            if replaces is not None:
                connection.execute("DELETE FROM entries WHERE entry_id = ?", (replaces,))
            # UNIQUE(exact_key) makes REPLACE drop any other entry of the same request too.
            connection.execute("INSERT OR REPLACE INTO entries VALUES (?,?,?,?,?,?,?,?)", row)

        await self._write(write)

    async def delete(self, entry_ids: Sequence[str]) -> None:
        ids = [(entry_id,) for entry_id in entry_ids]

        def write(connection: sqlite3.Connection) -> None:
            connection.executemany("DELETE FROM entries WHERE entry_id = ?", ids)

        if ids:
            await self._write(write)

    async def changes(self, dim: int) -> AsyncIterator[Change]:
        return  # a local file has no other writers to follow
        yield

    async def add_feedback(self, scale: str, namespace: str, score_bin: int, wrong: bool) -> None:
        row = (scale, namespace, score_bin, int(wrong))

        def write(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO feedback VALUES (?, ?, ?, 1, ?) ON CONFLICT (scale, namespace, bin)"
                " DO UPDATE SET seen = seen + 1, wrong = wrong + excluded.wrong",
                row,
            )

        await self._write(write)

    async def load_feedback(self, scale: str) -> list[FeedbackCount]:
        query = "SELECT namespace, bin, seen, wrong FROM feedback WHERE scale = ? ORDER BY 1, 2"
        rows = await self._run(lambda c: c.execute(query, (scale,)).fetchall())
        return [
            FeedbackCount(scale, ns, int(b), int(seen), int(wrong)) for ns, b, seen, wrong in rows
        ]

    async def embedder(self) -> str | None:
        query = "SELECT value FROM store_meta WHERE key = 'embedder'"
        row = await self._run(lambda c: c.execute(query).fetchone())
        return None if row is None else str(row[0])

    async def set_embedder(self, identity: str) -> None:
        def write(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT OR REPLACE INTO store_meta VALUES ('embedder', ?)", (identity,)
            )

        await self._write(write)

    async def close(self) -> None:
        if self._connection is not None:
            await self._run(lambda c: c.close())
            self._connection = None
        self._executor.shutdown(wait=True)

    def _open(self, _: Any) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=True)
        try:
            # Another process on the same file (a second replica, a test) may hold the write
            # lock for a moment; wait rather than fail.
            connection.execute("PRAGMA busy_timeout = 5000")
            problem = _integrity_problem(connection)
            if problem:
                raise StoreCorrupt(f"cache database {self._path} is corrupt: {problem}")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreCorrupt(
                    f"cache database {self._path} has schema version {version}, newer than "
                    f"this service's {SCHEMA_VERSION}"
                )
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute(f"PRAGMA synchronous = {self._sync.upper()}")
            connection.executescript(_SCHEMA)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as error:
            connection.close()
            raise StoreCorrupt(f"cache database {self._path} is unusable: {error}") from None
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    async def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        loop = asyncio.get_running_loop()

        def call() -> Any:
            try:
                return work(self._connection)  # type: ignore[arg-type]
            except sqlite3.DatabaseError as error:
                raise StoreCorrupt(f"cache database {self._path}: {error}") from None

        return await loop.run_in_executor(self._executor, call)

    async def _write(self, write: _Write) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((write, future))
        # One drain per write; a drain that finds the queue already emptied does nothing.
        self._executor.submit(self._drain)
        await future

    def _drain(self) -> None:
        batch = []
        while self._queue:
            batch.append(self._queue.popleft())
        if not batch or self._connection is None or self._loop is None:
            return
        error: Exception | None = None
        try:
            _commit(self._connection, [write for write, _ in batch])
            self.commits += 1
        except sqlite3.Error as failure:
            error = StoreUnavailable(f"{self._path}: {failure}")
        except Exception as failure:  # handed to every waiter rather than lost in the thread
            error = failure
        for _, future in batch:
            self._loop.call_soon_threadsafe(_settle, future, error)


def _page(connection: sqlite3.Connection, *, after: int) -> list[tuple[int, bytes, bytes | None]]:
    query = "SELECT rowid, meta, vector FROM entries WHERE rowid > ? ORDER BY rowid LIMIT ?"
    return connection.execute(query, (after, LOAD_BATCH)).fetchall()


def _commit(connection: sqlite3.Connection, writes: list[_Write]) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        for write in writes:
            write(connection)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _settle(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return  # the waiting RPC was cancelled; the write itself went through or failed
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _integrity_problem(connection: sqlite3.Connection) -> str:
    # quick_check reads every page (O(size)) but skips the slower index cross-checks of
    # integrity_check; it catches torn or overwritten pages and a file that is not a database.
    rows = connection.execute("PRAGMA quick_check").fetchall()
    messages = [str(row[0]) for row in rows]
    return "" if messages == ["ok"] else "; ".join(messages[:5])

"""Durable job store: SQLite by default, behind the JobStore protocol so a shared store (Redis,
Postgres) can replace it when several batcher replicas must see the same jobs.

Durability: WAL journal with synchronous=FULL, so a committed transaction survives a crash or
power loss. Every state change is one transaction that also checks the transition is legal, and
results are written in the same transaction as the terminal state. The store is synchronous:
each call is one small local transaction, quicker than a thread hop would be.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from services.batcher.jobs import (
    ItemRequest,
    ItemResult,
    Job,
    JobState,
    check_transition,
    request_line,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    -- NULL when the caller gave none; otherwise Submit is idempotent per tenant and request id.
    request_id TEXT,
    model TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    state TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    file_id TEXT NOT NULL DEFAULT '',
    batch_id TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (tenant, request_id)
);
CREATE TABLE IF NOT EXISTS items (
    job_id TEXT NOT NULL REFERENCES jobs (job_id),
    position INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    -- The exact JSONL line uploaded, so a repeated upload after a crash is byte-identical.
    line TEXT NOT NULL,
    -- ItemResult as JSON once the job has finished.
    result TEXT,
    PRIMARY KEY (job_id, position)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
"""
_COLUMNS = (
    "job_id, tenant, request_id, model, endpoint, state, created_at, file_id, batch_id, error, "
    "cancel_requested"
)


class UnknownJob(KeyError):
    """No job has this id (for this tenant)."""


class JobStore(Protocol):
    def insert(self, job: Job, items: Sequence[ItemRequest]) -> tuple[Job, bool]: ...
    def load(self, job_id: str) -> Job: ...
    def lines(self, job_id: str) -> list[str]: ...
    def unfinished(self) -> list[str]: ...
    def advance(
        self,
        job_id: str,
        state: JobState,
        *,
        file_id: str = "",
        batch_id: str = "",
        error: str = "",
    ) -> Job: ...
    def finish(
        self, job_id: str, state: JobState, results: Sequence[ItemResult], error: str = ""
    ) -> Job: ...
    def request_cancel(self, job_id: str) -> Job: ...
    def close(self) -> None: ...


class SqliteJobStore:
    """Jobs in one SQLite file, `<data_dir>/jobs.sqlite3`."""

    def __init__(self, data_dir: Path, clock: Callable[[], float] = time.time) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(data_dir / "jobs.sqlite3", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._clock = clock

    def close(self) -> None:
        self._db.close()

    def insert(self, job: Job, items: Sequence[ItemRequest]) -> tuple[Job, bool]:
        """Stores a new job and its items in one transaction; returns (job, existing), where an
        earlier job of the same tenant and request id is returned instead of a second one."""
        with self._transaction():
            if job.request_id:
                row = self._db.execute(
                    "SELECT job_id FROM jobs WHERE tenant = ? AND request_id = ?",
                    (job.tenant, job.request_id),
                ).fetchone()
                if row is not None:
                    return self._load(row[0]), True
            now = self._clock()
            self._db.execute(
                f"INSERT INTO jobs ({_COLUMNS}, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job.job_id,
                    job.tenant,
                    job.request_id or None,
                    job.model,
                    job.endpoint,
                    str(job.state),
                    job.created_at,
                    "",
                    "",
                    "",
                    0,
                    now,
                ),
            )
            self._db.executemany(
                "INSERT INTO items (job_id, position, custom_id, line) VALUES (?,?,?,?)",
                (
                    (job.job_id, n, item.custom_id, request_line(item))
                    for n, item in enumerate(items)
                ),
            )
        return self.load(job.job_id), False

    def load(self, job_id: str) -> Job:
        return self._load(job_id)

    def lines(self, job_id: str) -> list[str]:
        rows = self._db.execute(
            "SELECT line FROM items WHERE job_id = ? ORDER BY position", (job_id,)
        )
        return [line for (line,) in rows]

    def unfinished(self) -> list[str]:
        terminal = [str(s) for s in JobState if s.terminal]
        rows = self._db.execute(
            f"SELECT job_id FROM jobs WHERE state NOT IN ({','.join('?' * len(terminal))})"
            " ORDER BY created_at",
            terminal,
        )
        return [job_id for (job_id,) in rows]

    def advance(
        self,
        job_id: str,
        state: JobState,
        *,
        file_id: str = "",
        batch_id: str = "",
        error: str = "",
    ) -> Job:
        """Moves a job to state, recording any provider id learnt on the way."""
        with self._transaction():
            self._move(job_id, state, error)
            if file_id:
                self._db.execute("UPDATE jobs SET file_id = ? WHERE job_id = ?", (file_id, job_id))
            if batch_id:
                self._db.execute(
                    "UPDATE jobs SET batch_id = ? WHERE job_id = ?", (batch_id, job_id)
                )
        return self.load(job_id)

    def finish(
        self, job_id: str, state: JobState, results: Sequence[ItemResult], error: str = ""
    ) -> Job:
        """Ends a job, writing its results in the same transaction."""
        with self._transaction():
            self._move(job_id, state, error)
            positions = {cid: n for n, cid in enumerate(self._custom_ids(job_id))}
            self._db.executemany(
                "UPDATE items SET result = ? WHERE job_id = ? AND position = ?",
                ((r.to_json().decode(), job_id, positions[r.custom_id]) for r in results),
            )
        return self.load(job_id)

    def request_cancel(self, job_id: str) -> Job:
        """Records that the caller wants the job cancelled; the runner carries it out."""
        with self._transaction():
            updated = self._db.execute(
                "UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE job_id = ?",
                (self._clock(), job_id),
            )
            if updated.rowcount == 0:
                raise UnknownJob(job_id)
        return self.load(job_id)

    def _move(self, job_id: str, state: JobState, error: str) -> None:
        current = self._state(job_id)
        check_transition(current, state)
        self._db.execute(
            "UPDATE jobs SET state = ?, error = ?, updated_at = ? WHERE job_id = ?",
            (str(state), error, self._clock(), job_id),
        )

    def _state(self, job_id: str) -> JobState:
        row = self._db.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise UnknownJob(job_id)
        return JobState(row[0])

    def _custom_ids(self, job_id: str) -> list[str]:
        rows = self._db.execute(
            "SELECT custom_id FROM items WHERE job_id = ? ORDER BY position", (job_id,)
        )
        return [custom_id for (custom_id,) in rows]

    def _load(self, job_id: str) -> Job:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)
        ).fetchone()
        if row is None:
            raise UnknownJob(job_id)
        items = self._db.execute(
            "SELECT custom_id, result FROM items WHERE job_id = ? ORDER BY position", (job_id,)
        ).fetchall()
        return Job(
            job_id=row[0],
            tenant=row[1],
            request_id=row[2] or "",
            model=row[3],
            endpoint=row[4],
            state=JobState(row[5]),
            created_at=row[6],
            file_id=row[7],
            batch_id=row[8],
            error=row[9],
            cancel_requested=bool(row[10]),
            custom_ids=tuple(custom_id for custom_id, _ in items),
            results=tuple(ItemResult.from_json(r) for _, r in items if r is not None),
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on error; the connection is in autocommit mode so
    transactions are explicit and never left open by the sqlite3 module's implicit BEGIN."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")

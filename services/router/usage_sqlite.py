"""SqliteUsage: the usage record (usage.py) in a SQLite file, durable across router restarts.

This is what `sluice up` configures: its router keeps the record under the state directory, so
`sluice report` in another terminal reads what the running mesh recorded, restarts included.
One row per day, combination of dimensions and counter; a flush adds to the rows with one
UPSERT per cell in one transaction. SQLite calls run in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from services.router.usage import Period, UsageKey, UsageRow

_DIMENSIONS = "day, tenant, model_class, request_class, tier, model, region"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS usage (
  day TEXT NOT NULL, tenant TEXT NOT NULL, model_class TEXT NOT NULL,
  request_class TEXT NOT NULL, tier INTEGER NOT NULL, model TEXT NOT NULL,
  region TEXT NOT NULL, counter TEXT NOT NULL, amount INTEGER NOT NULL,
  PRIMARY KEY ({_DIMENSIONS}, counter)
)
"""
_ADD = f"""
INSERT INTO usage ({_DIMENSIONS}, counter, amount) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO UPDATE SET amount = amount + excluded.amount
"""
_READ = f"SELECT {_DIMENSIONS}, counter, amount FROM usage WHERE day BETWEEN ? AND ?"


class SqliteUsage:
    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # A connection per call: calls run in worker threads, and a flush is a few per second.
        db = sqlite3.connect(self._path, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def _add(self, cells: Mapping[UsageKey, Mapping[str, int]]) -> None:
        rows = [
            (k.day, k.tenant, k.model_class, k.request_class, k.tier, k.model, k.region, c, n)
            for k, counters in cells.items()
            for c, n in counters.items()
            if n
        ]
        db = self._connect()
        try:
            with db:
                db.executemany(_ADD, rows)
        finally:
            db.close()

    def _read(self, period: Period, tenants: frozenset[str] | None) -> list[UsageRow]:
        db = self._connect()
        try:
            found = db.execute(_READ, (period.first.isoformat(), period.last.isoformat()))
            cells: dict[UsageKey, Counter[str]] = {}
            for day, tenant, model_class, request_class, tier, model, region, c, n in found:
                if tenants is None or tenant in tenants:
                    key = UsageKey(day, tenant, model_class, request_class, tier, model, region)
                    cells.setdefault(key, Counter())[c] += n
        finally:
            db.close()
        return [UsageRow(key, dict(counters)) for key, counters in sorted(cells.items())]

    async def add(self, cells: Mapping[UsageKey, Mapping[str, int]]) -> None:
        await asyncio.to_thread(self._add, cells)

    async def read(self, period: Period, tenants: frozenset[str] | None) -> list[UsageRow]:
        return await asyncio.to_thread(self._read, period, tenants)

    async def close(self) -> None:
        """Nothing held open between calls."""

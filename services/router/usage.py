"""The usage record: what each UTC day's requests cost, by tenant, model class, request class,
tier, model and region, beside what the baseline model would have charged, with the cost and
the savings split by stage. `sluice report` reads it (SpendService.GetUsage).

The budget ledger (budgets.py) keeps only per-tenant totals, enough to enforce a budget; this
record keeps the dimensions a report needs. It is aggregated as it is written: one set of
counters per day and combination of dimensions, never one entry per request, so it stays small
however many requests it counts.

Spending (spending.py) writes it, once per settled request and once per cache hit, into a
buffer on this replica (no I/O on the request path); a background task flushes the buffer to
the backend every `flush_every_s`, and a read flushes first, so a report sees every request
this replica settled before it. Backends: in memory (this replica, lost on restart), SQLite
(usage_sqlite.py: durable on this machine, what `sluice up` uses) and Redis (usage_redis.py:
shared by every replica).

Domain code: no gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from shared.errors import InvalidRequest

LOG = logging.getLogger(__name__)
# Counter names of a record; stage costs and savings are "cost.<stage>" and "saved.<stage>".
REQUESTS = "requests"
CACHE_HITS = "cache_hits"
COST = "cost"
BASELINE = "baseline"
STAGE_COST = "cost."
STAGE_SAVED = "saved."
# The longest period one read covers: a year, leap day included.
MAX_PERIOD_DAYS = 366
DEFAULT_FLUSH_S = 1.0


@dataclass(frozen=True, order=True)
class UsageKey:
    """The dimensions one set of counters is kept for."""

    day: str
    tenant: str
    model_class: str
    # The request class the router keys its per-class start tier on (class_start.class_key).
    request_class: str
    # The tier that answered (1-based); 0 for a cache hit, an audit or an unanswered request.
    tier: int
    model: str
    region: str


@dataclass(frozen=True)
class UsageRow:
    key: UsageKey
    counters: Mapping[str, int]

    @property
    def stage_costs(self) -> dict[str, int]:
        return _prefixed(self.counters, STAGE_COST)

    @property
    def stage_savings(self) -> dict[str, int]:
        return _prefixed(self.counters, STAGE_SAVED)


def _prefixed(counters: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {k.removeprefix(prefix): v for k, v in sorted(counters.items()) if k.startswith(prefix)}


@dataclass(frozen=True)
class Period:
    """UTC days, both ends included."""

    first: date
    last: date

    def days(self) -> list[str]:
        count = (self.last - self.first).days + 1
        return [(self.first + timedelta(days=n)).isoformat() for n in range(count)]

    def covers(self, day: str) -> bool:
        return self.first.isoformat() <= day <= self.last.isoformat()


def _day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{name} {value!r} is not a day as YYYY-MM-DD") from None


def parse_period(first_day: str, last_day: str, today: date) -> Period:
    """The period a caller asked for: an empty last day is today, an empty first day the last."""
    last = _day(last_day, "last_day") if last_day else today
    first = _day(first_day, "first_day") if first_day else last
    if first > last:
        raise InvalidRequest(f"first_day {first} is after last_day {last}")
    if (last - first).days + 1 > MAX_PERIOD_DAYS:
        raise InvalidRequest(f"the period {first}..{last} is longer than {MAX_PERIOD_DAYS} days")
    return Period(first, last)


class UsageBackend(Protocol):
    async def add(self, cells: Mapping[UsageKey, Mapping[str, int]]) -> None:
        """Adds the counters to what each key has; atomic per call, or not applied at all."""

    async def read(self, period: Period, tenants: frozenset[str] | None) -> list[UsageRow]:
        """The rows of the period's days, of `tenants` only (None: every tenant), in key order."""

    async def close(self) -> None: ...


@dataclass
class InMemoryUsage:
    """This replica's record, kept until it stops, for the last `keep_days` days written: a
    router that runs for years must not grow with the calendar."""

    cells: dict[UsageKey, Counter[str]] = field(default_factory=dict)
    keep_days: int = MAX_PERIOD_DAYS
    _newest_day: str = ""

    async def add(self, cells: Mapping[UsageKey, Mapping[str, int]]) -> None:
        newest = max((key.day for key in cells), default="")
        advanced = newest > self._newest_day
        self._newest_day = max(newest, self._newest_day)
        cutoff = self._first_kept()
        for key, counters in cells.items():
            if key.day >= cutoff:
                self.cells.setdefault(key, Counter()).update(counters)
        if advanced:
            for key in [key for key in self.cells if key.day < cutoff]:
                del self.cells[key]

    def _first_kept(self) -> str:
        if not self._newest_day:
            return ""
        newest = date.fromisoformat(self._newest_day)
        return (newest - timedelta(days=self.keep_days - 1)).isoformat()

    async def read(self, period: Period, tenants: frozenset[str] | None) -> list[UsageRow]:
        return [
            UsageRow(key, dict(counters))
            for key, counters in sorted(self.cells.items())
            if period.covers(key.day) and (tenants is None or key.tenant in tenants)
        ]

    async def close(self) -> None:
        """Nothing to release."""


def merge(rows: Iterable[UsageRow], into: dict[UsageKey, Counter[str]]) -> None:
    for row in rows:
        # Not setdefault(key, Counter()).update(...): every request passes here, and that
        # builds a Counter per call and checks the row's type on the way in.
        counters = into.get(row.key)
        if counters is None:
            counters = into[row.key] = Counter()
        for name, value in row.counters.items():
            counters[name] += value


class UsageLog:
    """The record as the router writes it: buffered on this replica, flushed to the backend."""

    def __init__(
        self,
        backend: UsageBackend,
        flush_every_s: float = DEFAULT_FLUSH_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._backend = backend
        self._clock = clock
        self._flush_every_s = flush_every_s
        self._pending: dict[UsageKey, Counter[str]] = {}
        # Flushes one at a time, so a read's flush waits for the background one in flight.
        self._flushing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def today(self) -> date:
        """The UTC day a request settled now counts in."""
        return self._clock().date()

    def record(self, row: UsageRow) -> None:
        """Adds one request's counters; no I/O, so the request path never waits for it."""
        merge((row,), self._pending)

    async def flush(self) -> None:
        """Sends what is buffered; on a backend error keeps it for the next flush."""
        async with self._flushing:
            pending, self._pending = self._pending, {}
            if not pending:
                return
            try:
                await self._backend.add(pending)
            except Exception:
                LOG.warning("usage record not flushed; kept for the next flush", exc_info=True)
                merge((UsageRow(k, v) for k, v in pending.items()), self._pending)
                raise

    async def read(self, period: Period, tenants: frozenset[str] | None) -> list[UsageRow]:
        """The period's rows, this replica's latest requests included."""
        await self.flush()
        return await self._backend.read(period, tenants)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_every_s)
            with contextlib.suppress(Exception):
                # Logged by flush; the buffer is kept and the next round retries.
                await self.flush()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever(), name="usage-flush")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.flush()
        finally:
            await self._backend.close()

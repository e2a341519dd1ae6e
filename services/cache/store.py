"""Entry stores: where accepted answers live so that they outlast the process.

The cache keeps every live entry in memory (with its vector in a FAISS index) and writes
through to an EntryStore before a Store RPC is acknowledged. At start-up it loads every entry
back, vectors included, so nothing is re-embedded. Implementations:

- SqliteStore (store_sqlite.py): a local file, the embedded default.
- RedisStore (store_redis.py): shared by several replicas, which follow each other's writes
  through `changes()`.
- MemoryStore (here): nothing outlasts the process; for tests and throwaway runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.cache.records import BadRecord, EntryRecord


class StoreCorrupt(Exception):
    """The store's data cannot be read; the message names the file or server."""


class StoreUnavailable(Exception):
    """A read or write failed (disk full, I/O error, server unreachable)."""


@dataclass(frozen=True)
class EntryPut:
    """Another replica stored this entry (a BadRecord when its vector is unusable)."""

    record: EntryRecord | BadRecord


@dataclass(frozen=True)
class EntryDeleted:
    """Some replica removed this entry."""

    entry_id: str


@dataclass(frozen=True)
class Resynced:
    """The change feed had a gap; these are all the entries the store holds now."""

    records: list[EntryRecord]


@dataclass(frozen=True)
class FeedbackAdded:
    """Another replica counted one ReportHit outcome (seen 1, wrong 0 or 1)."""

    count: FeedbackCount


Change = EntryPut | EntryDeleted | Resynced | FeedbackAdded
Loaded = EntryRecord | BadRecord
# Feedback scores are kept in this many bins of [0, 1]: finer than any calibrator uses, so the
# stored counts can be re-binned without loss at start-up.
FEEDBACK_BINS = 1000


@dataclass(frozen=True)
class FeedbackCount:
    """Labelled outcomes (ReportHit) of one namespace in one score bin.

    scale names what the scores are (the verifier and its model file), so counts recorded
    under one model are never read as another's."""

    scale: str
    namespace: str
    bin: int  # in [0, FEEDBACK_BINS)
    seen: int
    wrong: int


class EntryStore(Protocol):
    """Durable entries. Every method but `changes` is awaited from the event loop."""

    @property
    def description(self) -> str:
        """Where the entries live, for logs and errors (never holds a password)."""

    async def open(self) -> None:
        """Connects and checks the data; raises StoreCorrupt when it cannot be used."""

    def load(self, dim: int) -> AsyncIterator[list[Loaded]]:
        """Every stored entry, in batches; vectors not of `dim` come back as BadRecord."""

    async def put(self, record: EntryRecord, replaces: str | None) -> None:
        """Stores a record durably, removing entry `replaces` (same exact key) if given."""

    async def delete(self, entry_ids: Sequence[str]) -> None:
        """Removes entries; unknown ids are ignored."""

    def changes(self, dim: int) -> AsyncIterator[Change]:
        """Other replicas' writes as they happen; ends at once for stores nobody shares."""

    async def add_feedback(self, scale: str, namespace: str, score_bin: int, wrong: bool) -> None:
        """Durably counts one labelled outcome; raises StoreUnavailable when it cannot."""

    async def load_feedback(self, scale: str) -> list[FeedbackCount]:
        """Every feedback count recorded under `scale`."""

    async def embedder(self) -> str | None:
        """The identity of the embedder that made the stored vectors (shared/embedding/files.py);
        None for a store that never recorded one (new, or written before identities existed)."""

    async def set_embedder(self, identity: str) -> None:
        """Records the identity of the embedder whose vectors the store now holds."""

    async def close(self) -> None: ...


class MemoryStore:
    """Keeps records in a dict: survives nothing, costs nothing."""

    def __init__(self) -> None:
        self.records: dict[str, EntryRecord] = {}
        # (scale, namespace, bin) -> [seen, wrong]
        self.feedback: dict[tuple[str, str, int], list[int]] = {}
        self.embedder_identity: str | None = None

    @property
    def description(self) -> str:
        return "memory://"

    async def open(self) -> None:
        return None

    async def load(self, dim: int) -> AsyncIterator[list[Loaded]]:
        if self.records:
            yield list(self.records.values())

    async def put(self, record: EntryRecord, replaces: str | None) -> None:
        if replaces is not None:
            self.records.pop(replaces, None)
        self.records[record.entry_id] = record

    async def delete(self, entry_ids: Sequence[str]) -> None:
        for entry_id in entry_ids:
            self.records.pop(entry_id, None)

    async def changes(self, dim: int) -> AsyncIterator[Change]:
        return
        yield  # an async generator that ends at once

    async def add_feedback(self, scale: str, namespace: str, score_bin: int, wrong: bool) -> None:
        counts = self.feedback.setdefault((scale, namespace, score_bin), [0, 0])
        counts[0] += 1
        counts[1] += int(wrong)

    async def load_feedback(self, scale: str) -> list[FeedbackCount]:
        return [
            FeedbackCount(s, namespace, score_bin, seen, wrong)
            for (s, namespace, score_bin), (seen, wrong) in sorted(self.feedback.items())
            if s == scale
        ]

    async def embedder(self) -> str | None:
        return self.embedder_identity

    async def set_embedder(self, identity: str) -> None:
        self.embedder_identity = identity

    async def close(self) -> None:
        return None

"""The cache's in-memory state: entries by id, exact key, namespace, tenant and tag.

Bounds are global: one least-recently-used order and one expiry heap across every namespace,
so SLUICE_CACHE_MAX_ENTRIES and SLUICE_CACHE_MAX_BYTES bound the whole process. Vectors live
only in the namespaces' indexes, never here, so an entry costs its texts plus a few objects.
Everything is synchronous; SemanticCache calls it from the event loop only.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from services.cache.adaptive import AdaptiveIndex
from services.cache.records import CachedAnswer, EntryRecord


@dataclass(eq=False)
class Entry:
    """One live entry; the vector is in its namespace's index under vector_id."""

    entry_id: str
    tenant_id: str
    exact_key: str
    namespace: str
    query: str | None
    answer: CachedAnswer
    created_at: float
    expires_at: float
    tags: tuple[str, ...]
    vector_id: int | None
    nbytes: int


@dataclass(eq=False)
class Namespace:
    """The entries sharing one namespace key; all belong to one tenant."""

    tenant_id: str
    index: AdaptiveIndex
    entry_ids: set[str] = field(default_factory=set)
    by_vector: dict[int, Entry] = field(default_factory=dict)


@dataclass
class TenantSize:
    entries: int = 0
    nbytes: int = 0


class EntryTable:
    """Entries and their lookup structures, kept consistent with each other."""

    def __init__(self, index_factory: Callable[[], AdaptiveIndex]) -> None:
        self._index_factory = index_factory
        self.by_id: dict[str, Entry] = {}
        self.by_exact: dict[str, Entry] = {}
        self.namespaces: dict[str, Namespace] = {}
        self._lru: OrderedDict[str, Entry] = OrderedDict()
        # (expires_at, entry_id) min-heap; items of removed entries stay until popped or
        # compacted, and are recognised because the id is gone or its expiry differs.
        self._expiries: list[tuple[float, str]] = []
        self._tags: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
        self._sizes: defaultdict[str, TenantSize] = defaultdict(TenantSize)
        self._vector_ids = itertools.count(1)
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.by_id)

    def size(self, tenant_id: str | None) -> TenantSize:
        if tenant_id is None:
            return TenantSize(len(self.by_id), self.nbytes)
        found = self._sizes.get(tenant_id)
        return TenantSize(found.entries, found.nbytes) if found else TenantSize()

    def add_many(self, records: Iterable[EntryRecord]) -> list[Entry]:
        """Adds records whose ids and exact keys are not present; vectors go in per namespace."""
        added = []
        pending: defaultdict[str, list[tuple[int, EntryRecord]]] = defaultdict(list)
        for record in records:
            entry = self._entry(record)
            added.append(entry)
            if entry.vector_id is not None:
                pending[record.namespace].append((entry.vector_id, record))
        for namespace_key, items in pending.items():
            ids = np.fromiter((vector_id for vector_id, _ in items), np.int64, len(items))
            vectors = np.stack([record.vector for _, record in items if record.vector is not None])
            self.namespaces[namespace_key].index.add_many(ids, vectors)
        return added

    def remove_many(self, entries: Iterable[Entry]) -> list[Entry]:
        """Forgets the entries that are still present and returns them; namespaces left empty
        go too. One index call per namespace, since a flat removal is O(n) however many."""
        present = {e.entry_id: e for e in entries if self.by_id.get(e.entry_id) is e}
        vectors: defaultdict[str, list[int]] = defaultdict(list)
        for entry in present.values():
            self._forget(entry)
            # Looked up even for entries without a vector, so that their namespace is checked.
            vector_ids = vectors[entry.namespace]
            if entry.vector_id is not None:
                vector_ids.append(entry.vector_id)
                del self.namespaces[entry.namespace].by_vector[entry.vector_id]
        for namespace_key, vector_ids in vectors.items():
            self.namespaces[namespace_key].index.remove(vector_ids)
            self._drop_if_empty(namespace_key)
        return list(present.values())

    def touch(self, entry: Entry) -> None:
        self._lru.move_to_end(entry.entry_id)

    def expired(self, now: float) -> list[Entry]:
        """Pops and returns every entry whose expiry has passed (the caller removes them)."""
        found = []
        while self._expiries and self._expiries[0][0] <= now:
            expires_at, entry_id = heapq.heappop(self._expiries)
            entry = self.by_id.get(entry_id)
            if entry is not None and entry.expires_at == expires_at:
                found.append(entry)
        return found

    def over_bounds(self, max_entries: int, max_bytes: int) -> list[Entry]:
        """The least recently used entries whose removal brings both totals within bounds."""
        excess_entries = len(self.by_id) - max_entries
        excess_bytes = self.nbytes - max_bytes
        victims: list[Entry] = []
        for entry in self._lru.values():
            if excess_entries <= 0 and excess_bytes <= 0:
                break
            victims.append(entry)
            excess_entries -= 1
            excess_bytes -= entry.nbytes
        return victims

    def in_namespace(self, namespace_key: str) -> list[Entry]:
        namespace = self.namespaces.get(namespace_key)
        return [] if namespace is None else [self.by_id[i] for i in namespace.entry_ids]

    def in_tenant(self, tenant_id: str) -> list[Entry]:
        return [
            self.by_id[entry_id]
            for namespace in self.namespaces.values()
            if namespace.tenant_id == tenant_id
            for entry_id in namespace.entry_ids
        ]

    def tagged(self, tenant_id: str, tag: str) -> list[Entry]:
        return [self.by_id[i] for i in self._tags.get((tenant_id, tag), ())]

    def _entry(self, record: EntryRecord) -> Entry:
        namespace = self.namespaces.get(record.namespace)
        if namespace is None:
            namespace = Namespace(record.tenant_id, self._index_factory())
            self.namespaces[record.namespace] = namespace
        entry = Entry(
            entry_id=record.entry_id,
            tenant_id=record.tenant_id,
            exact_key=record.exact_key,
            namespace=record.namespace,
            query=record.query,
            answer=record.answer,
            created_at=record.created_at,
            expires_at=record.expires_at,
            tags=record.tags,
            vector_id=None if record.vector is None else next(self._vector_ids),
            nbytes=record.nbytes,
        )
        self.by_id[entry.entry_id] = entry
        self.by_exact[entry.exact_key] = entry
        self._lru[entry.entry_id] = entry
        heapq.heappush(self._expiries, (entry.expires_at, entry.entry_id))
        namespace.entry_ids.add(entry.entry_id)
        if entry.vector_id is not None:
            namespace.by_vector[entry.vector_id] = entry
        for tag in entry.tags:
            self._tags[(entry.tenant_id, tag)].add(entry.entry_id)
        size = self._sizes[entry.tenant_id]
        size.entries += 1
        size.nbytes += entry.nbytes
        self.nbytes += entry.nbytes
        return entry

    def _forget(self, entry: Entry) -> None:
        """Removes everything but the vector and the namespace itself."""
        del self.by_id[entry.entry_id]
        del self._lru[entry.entry_id]
        if self.by_exact.get(entry.exact_key) is entry:
            del self.by_exact[entry.exact_key]
        self.namespaces[entry.namespace].entry_ids.discard(entry.entry_id)
        for tag in entry.tags:
            tagged = self._tags[(entry.tenant_id, tag)]
            tagged.discard(entry.entry_id)
            if not tagged:
                del self._tags[(entry.tenant_id, tag)]
        size = self._sizes[entry.tenant_id]
        size.entries -= 1
        size.nbytes -= entry.nbytes
        if not size.entries:
            del self._sizes[entry.tenant_id]
        self.nbytes -= entry.nbytes
        # Heap items of removed entries would otherwise pile up for a whole TTL.
        if len(self._expiries) > 2 * len(self.by_id) + 64:
            self._expiries = [(e.expires_at, e.entry_id) for e in self.by_id.values()]
            heapq.heapify(self._expiries)

    def _drop_if_empty(self, namespace_key: str) -> None:
        # Every distinct conversation prefix makes a namespace; empty ones must not linger.
        if not self.namespaces[namespace_key].entry_ids:
            del self.namespaces[namespace_key]

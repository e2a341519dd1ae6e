"""The semantic cache's domain logic: lookup, store, invalidation, bounds and stats.

A lookup tries the exact key, then the nearest neighbours of the last user turn's embedding in
the request's namespace, skipping expired and too-old entries and those verification turns
down, and hits only at or above `min_similarity`. A store writes through to the EntryStore
before it is acknowledged, then updates memory; entries past the global entry or byte bound
are evicted least recently used first, after expired ones.

All in-memory state changes happen synchronously on the event loop between awaits, so no locks
are needed; anything read before an await is looked up again after it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from services.cache.adaptive import AdaptiveIndex
from services.cache.candidates import Search, candidates, choose, chosen
from services.cache.changes import ChangeLog
from services.cache.entries import Entry, EntryTable, Namespace
from services.cache.feedback import FeedbackBook, HitReport, judged
from services.cache.invalidation import resolve_target
from services.cache.keys import RequestKeys
from services.cache.metrics import CacheMetrics
from services.cache.model import (
    CachePolicy,
    CacheRequest,
    HitKind,
    InvalidateTarget,
    LookupResult,
    QueryEmbedder,
    StoredEntry,
    keys_of,
    validate_max_age,
    validate_max_wrong_rate,
    validate_tags,
)
from services.cache.records import BadRecord, CachedAnswer, EntryRecord, order_key, shape_problem
from services.cache.stats import CacheStats, Removal, StatsBook
from services.cache.store import (
    EntryDeleted,
    EntryPut,
    EntryStore,
    FeedbackAdded,
    Loaded,
    MemoryStore,
    Resynced,
    StoreUnavailable,
)
from services.cache.verify import AcceptAll, HitVerifier, ScoresInBatches
from services.cache.window import QueryWindow, minilm_window
from shared.errors import InvalidRequest, NotReady, Unavailable

__all__ = [
    "CachePolicy",
    "CacheRequest",
    "CachedAnswer",
    "HitKind",
    "LookupResult",
    "SemanticCache",
]

LOG = logging.getLogger(__name__)
# Name of the task that applies other replicas' writes; it runs until the cache closes.
FOLLOW = "follow"


class SemanticCache:
    """Exact and semantic lookup of accepted answers, namespaced by tenant and context."""

    def __init__(
        self,
        embedder: QueryEmbedder,
        policy: CachePolicy,
        *,
        store: EntryStore | None = None,
        verifier: HitVerifier | None = None,
        clock: Callable[[], float] = time.time,
        window: QueryWindow | None = None,
        metrics: CacheMetrics | None = None,
    ) -> None:
        # Wall-clock time, not monotonic: creation and expiry times are persisted and shared
        # between replicas, so they must keep their meaning across processes. `window` is what
        # the embedding model reads of a text (window.py): all-MiniLM-L6-v2's by default.
        self._embedder = embedder
        self._window = window or minilm_window()
        self._policy = policy
        self._store: EntryStore = store if store is not None else MemoryStore()
        self._verifier: HitVerifier = verifier or AcceptAll()
        self._feedback = FeedbackBook(self._verifier, self._store)
        self._clock = clock
        self._table = EntryTable(lambda: AdaptiveIndex(embedder.dim, policy.index))
        self._stats = StatsBook()
        # Prometheus counters (metrics.py); a registry of its own when the server passes none.
        self._metrics = metrics or CacheMetrics(CollectorRegistry())
        self._loaded = False
        self._tasks: set[asyncio.Task[None]] = set()
        # Every entry this replica stops serving, for routers' own exact copies (changes.py).
        self.changes = ChangeLog()

    @property
    def ready(self) -> bool:
        return self._loaded and self._embedder.ready

    def __len__(self) -> int:
        return len(self._table)

    def namespace(self, namespace_key: str) -> Namespace | None:
        """The namespace's state, for tests and the benchmark."""
        return self._table.namespaces.get(namespace_key)

    async def start(self) -> None:
        """Loads every stored entry (vectors included), then follows other replicas' writes."""
        count = 0
        async for batch in self._store.load(self._embedder.dim):
            count += len(self._admit(batch))
        outcomes = await self._feedback.restore()
        self._loaded = True
        self._enforce_bounds()
        self._rebuild_where_due(self._table.namespaces)
        where = self._store.description
        LOG.info("cache loaded %d entries, %d feedback outcomes from %s", count, outcomes, where)
        self._spawn(self._follow(), FOLLOW)

    async def settle(self) -> None:
        """Waits for background work (index rebuilds, store deletes); for tests and shutdown."""
        while pending := [task for task in self._tasks if task.get_name() != FOLLOW]:
            await asyncio.wait(pending)

    async def aclose(self) -> None:
        for task in self._tasks:
            if task.get_name() == FOLLOW or task.get_name().startswith("rebuild"):
                task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        await self._store.close()

    async def lookup(self, request: CacheRequest) -> LookupResult:
        """Finds the exact entry, else the most similar live entry above the threshold."""
        keys = self._keys(request)
        validate_max_age(request.max_age_s)
        validate_max_wrong_rate(request.max_wrong_rate)
        self._require_ready()
        result = await self._find(request, keys)
        counters = self._stats.tenant(request.tenant_id)
        counters.verification_rejects += result.rejected
        if result.kind is HitKind.EXACT:
            counters.exact_hits += 1
        elif result.kind is HitKind.SEMANTIC:
            counters.semantic_hits += 1
        else:
            counters.misses += 1
        self._metrics.looked_up(request.tenant_id, result)
        return result

    async def store(
        self,
        request: CacheRequest,
        answer: CachedAnswer,
        *,
        ttl_s: float | None = None,
        tags: Sequence[str] = (),
    ) -> StoredEntry:
        """Stores an answer durably, replacing any entry with the same exact key."""
        keys = self._keys(request)
        if not (answer.content or any(c.tool_calls or c.refusal for c in answer.choices)):
            raise InvalidRequest(
                "content is required: an empty answer (no text, tool call or refusal) is never "
                "cached"
            )
        if ttl_s is not None and not (ttl_s > 0 and math.isfinite(ttl_s)):
            raise InvalidRequest(f"ttl must be positive, got {ttl_s}s")
        self._require_ready()
        vector = None if keys.query is None else await self._embedder.embed(keys.query)
        now = self._clock()
        record = EntryRecord(
            entry_id=uuid.uuid4().hex,
            tenant_id=request.tenant_id,
            exact_key=keys.exact,
            namespace=keys.namespace,
            query=keys.query,
            answer=answer,
            created_at=now,
            expires_at=now + (self._policy.ttl_s if ttl_s is None else ttl_s),
            tags=validate_tags(tags),
            vector=vector,
        )
        if record.nbytes > self._policy.max_bytes:
            raise InvalidRequest(
                f"the entry takes {record.nbytes} bytes, more than the cache's whole byte "
                f"bound ({self._policy.max_bytes}, SLUICE_CACHE_MAX_BYTES)"
            )
        previous = self._table.by_exact.get(keys.exact)
        replaces = None if previous is None else previous.entry_id
        try:
            await self._store.put(record, replaces)
        except StoreUnavailable as error:
            raise Unavailable(f"the entry store failed: {error}") from None
        replaced = self._apply([record], newest_wins=False)
        # A store of the same key that finished during our write may hold another entry.
        self._forget_stored([e for e in replaced if e.entry_id != replaces], Removal.REPLACED)
        self._enforce_bounds()
        return StoredEntry(record.entry_id, keys.namespace)

    async def invalidate(self, tenant_id: str, target: InvalidateTarget) -> int:
        """Removes the target's entries from the store, then from memory; returns how many."""
        if not tenant_id:
            raise InvalidRequest("context.tenant_id is required")
        self._require_ready()
        entries = resolve_target(self._table, tenant_id, target, self._keys)
        return await self._remove_durably(entries, Removal.INVALIDATED)

    async def report_hit(
        self, request: CacheRequest, entry_id: str, correct: bool, *, shadow: bool = False
    ) -> HitReport:
        """A caller's verdict on a served hit, or (shadow) on a miss's nearest rejected entry.
        A semantic verdict either way is a labelled outcome for the namespace's threshold
        (feedback.py); only a wrong served hit removes the entry and counts as a failure."""
        keys = self._keys(request)
        self._require_ready()
        table, tenant_id = self._table, request.tenant_id
        entry, pair = await judged(table, self._embedder, tenant_id, keys, entry_id, shadow=shadow)
        # A served hit reported wrong is removed below, so only other verdicts are kept for
        # their entry too (the error bound's per-entry evidence).
        kept = entry.entry_id if correct or shadow else ""
        calibrated = pair is not None and await self._feedback.record(
            pair, correct, shadow=shadow, entry_id=kept
        )
        removed = 0
        if shadow and calibrated:
            counters = self._stats.tenant(tenant_id)
            counters.shadow_reports += 1
            counters.shadow_agreements += int(correct)
        if not correct and not shadow:
            self._stats.tenant(tenant_id).verification_failures += 1
            removed = await self._remove_durably([entry], Removal.REPORTED_WRONG)
        self._metrics.reported(tenant_id, keys.namespace, correct=correct, shadow=shadow)
        threshold = self._feedback.threshold(keys.namespace) if calibrated else 0.0
        return HitReport(keys.namespace, removed > 0, calibrated, threshold)

    def expires_in(self, entry_id: str) -> float:
        """Seconds the entry has left to live; 0 when it is gone."""
        entry = self._table.by_id.get(entry_id)
        return 0.0 if entry is None else max(0.0, entry.expires_at - self._clock())

    def served_elsewhere(self, entry_ids: Iterable[str]) -> None:
        """Exact hits a router answered from its own copies: counted and kept recently used
        as if this replica had served them."""
        for entry_id in entry_ids:
            entry = self._table.by_id.get(entry_id)
            if entry is not None:
                self._table.touch(entry)
                self._stats.tenant(entry.tenant_id).exact_hits += 1
                hit = LookupResult(HitKind.EXACT, entry.answer, 1.0, entry_id, entry.namespace)
                self._metrics.looked_up(entry.tenant_id, hit)

    def stats(self, tenant_id: str | None) -> CacheStats:
        """Counters since start and the current size, for a tenant or (None) for all."""
        self._forget_stored(self._table.expired(self._clock()), Removal.EXPIRED)
        size = self._table.size(tenant_id)
        return CacheStats(tenant_id, self._stats.snapshot(tenant_id), size.entries, size.nbytes)

    async def _find(self, request: CacheRequest, keys: RequestKeys) -> LookupResult:
        now = self._clock()
        oldest = -math.inf if request.max_age_s is None else now - request.max_age_s
        entry = self._table.by_exact.get(keys.exact)
        if entry is not None:
            if entry.expires_at <= now:
                self._forget_stored([entry], Removal.EXPIRED)
            elif entry.created_at >= oldest:
                self._table.touch(entry)
                return LookupResult(
                    HitKind.EXACT, entry.answer, 1.0, entry.entry_id, keys.namespace
                )
        miss = LookupResult(HitKind.MISS, namespace=keys.namespace)
        if not request.allow_semantic or keys.query is None:
            return miss
        if keys.namespace not in self._table.namespaces:
            return miss  # nothing to compare with, so skip the embedding
        vector = await self._embedder.embed(keys.query)
        namespace = self._table.namespaces.get(keys.namespace)
        if namespace is None:
            return miss
        limits = (self._policy.min_similarity, oldest, self._clock(), request.max_wrong_rate)
        search = Search(keys.query, keys.namespace, vector, *limits)
        if isinstance(self._verifier, ScoresInBatches):
            # A model verifier scores the candidates in one batch off the event loop, as the
            # embedding is; the choice below then reads its scores.
            pairs = [pair for _, pair in candidates(namespace, search, [])]
            if pairs:
                await asyncio.to_thread(self._verifier.prepare, pairs)
            namespace = self._table.namespaces.get(keys.namespace)
            if namespace is None:
                return miss
        return self._nearest(namespace, search)

    def _nearest(self, namespace: Namespace, search: Search) -> LookupResult:
        expired: list[Entry] = []
        choice = choose(namespace, search, self._verifier, self._feedback, expired)
        self._forget_stored(expired, Removal.EXPIRED)
        if choice.item is not None:
            self._table.touch(choice.item)
        return chosen(choice, search.namespace_key)

    def _admit(self, batch: Iterable[Loaded]) -> list[EntryRecord]:
        """Sorts loaded or followed records: bad vectors are counted, expired ones deleted."""
        now = self._clock()
        good: list[EntryRecord] = []
        stale: list[str] = []
        for item in batch:
            bad = item if isinstance(item, BadRecord) else shape_problem(item, self._embedder.dim)
            if bad is not None:
                self._stats.tenant(bad.tenant_id).skipped_bad_vectors += 1
                LOG.error(
                    "skipped stored entry %s (tenant %s, namespace %s): %s",
                    bad.entry_id,
                    bad.tenant_id,
                    bad.namespace,
                    bad.reason,
                )
            elif isinstance(item, EntryRecord):
                if item.expires_at <= now:
                    stale.append(item.entry_id)
                else:
                    good.append(item)
        if stale:
            self._spawn(self._delete_stored(stale), "delete")
        self._apply(good, newest_wins=True)
        return good

    def _apply(self, records: Sequence[EntryRecord], *, newest_wins: bool) -> list[Entry]:
        """Adds records to memory, one per exact key; returns the entries they replaced.

        Local stores always replace (newest_wins=False). Records loaded or followed from other
        replicas replace an entry only when created later, so every replica converges on the
        same entry however the events interleave.
        """
        chosen: dict[str, EntryRecord] = {}
        for record in records:
            if record.entry_id in self._table.by_id:
                continue  # our own write coming back, or an event applied twice
            other = chosen.get(record.exact_key)
            if other is None or not newest_wins or order_key(record) > order_key(other):
                chosen[record.exact_key] = record
        replaced: list[Entry] = []
        for key, record in list(chosen.items()):
            current = self._table.by_exact.get(key)
            if current is None:
                continue
            if newest_wins and order_key(record) <= (current.created_at, current.entry_id):
                del chosen[key]
            else:
                replaced.append(current)
        self.changes.removed(e.entry_id for e in self._table.remove_many(replaced))
        added = self._table.add_many(chosen.values())
        self._rebuild_where_due({entry.namespace for entry in [*added, *replaced]})
        return replaced

    async def _remove_durably(self, entries: Sequence[Entry], reason: Removal) -> int:
        """Removes entries from the store, then from memory (acknowledged once gone)."""
        if entries:
            try:
                await self._store.delete([entry.entry_id for entry in entries])
            except StoreUnavailable as error:
                raise Unavailable(f"the entry store failed: {error}") from None
        return len(self._remove(entries, reason))

    def _enforce_bounds(self) -> None:
        self._forget_stored(self._table.expired(self._clock()), Removal.EXPIRED)
        victims = self._table.over_bounds(self._policy.max_entries, self._policy.max_bytes)
        self._forget_stored(victims, Removal.EVICTED)

    def _forget_stored(self, entries: Sequence[Entry], reason: Removal) -> None:
        """Removes entries from memory now and from the store in the background."""
        removed = self._remove(entries, reason)
        if removed:
            self._spawn(self._delete_stored([entry.entry_id for entry in removed]), "delete")

    def _remove(self, entries: Iterable[Entry], reason: Removal) -> list[Entry]:
        removed = self._table.remove_many(entries)
        self.changes.removed(entry.entry_id for entry in removed)
        for entry in removed:
            self._stats.removed(entry.tenant_id, reason)
        self._rebuild_where_due({entry.namespace for entry in removed})
        return removed

    async def _delete_stored(self, entry_ids: list[str]) -> None:
        try:
            await self._store.delete(entry_ids)
        except StoreUnavailable as error:
            # Only costs space: the entries are gone from memory, and a restart drops them
            # again when they expire or exceed the bounds.
            LOG.warning("could not delete %d entries from the store: %s", len(entry_ids), error)

    async def _follow(self) -> None:
        async for change in self._store.changes(self._embedder.dim):
            if isinstance(change, EntryPut):
                self._admit([change.record])
            elif isinstance(change, EntryDeleted):
                entry = self._table.by_id.get(change.entry_id)
                if entry is not None:
                    self._remove([entry], Removal.REPLACED)
            elif isinstance(change, FeedbackAdded):
                self._feedback.apply(change.count)
            elif isinstance(change, Resynced):
                present = {record.entry_id for record in change.records}
                gone = [e for e in self._table.by_id.values() if e.entry_id not in present]
                self._remove(gone, Removal.REPLACED)
                self._admit(change.records)
                await self._feedback.reload()  # its events in the gap were missed too

    def _rebuild_where_due(self, namespace_keys: Iterable[str]) -> None:
        for key in namespace_keys:
            namespace = self._table.namespaces.get(key)
            if namespace is not None and namespace.index.rebuild_due():
                self._spawn(namespace.index.rebuild(), f"rebuild {key[:12]}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            LOG.error("cache background task %s failed", task.get_name(), exc_info=task.exception())

    def _keys(self, request: CacheRequest) -> RequestKeys:
        return keys_of(request, self._window)

    def _require_ready(self) -> None:
        if not self._embedder.ready:
            raise NotReady("the embedding model is still loading")
        if not self._loaded:
            raise NotReady("the cache is still loading its stored entries")

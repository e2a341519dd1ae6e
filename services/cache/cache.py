"""The semantic cache's domain logic: exact and semantic lookup, store, TTL and eviction.

Entries live in namespaces (see keys.py): one vector index and one LRU order per namespace,
plus a process-wide map from exact key to entry. A lookup tries the exact key, then the
nearest neighbours of the last user turn's embedding within the request's namespace, skipping
expired entries, and hits only at or above `min_similarity`.

All state changes happen synchronously on the event loop between awaits (the only await is the
embedding), so no locks are needed; state read before an await is looked up again after it.
"""

from __future__ import annotations

import heapq
import itertools
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from services.cache.index import FaissIndex, VectorIndex
from services.cache.keys import RequestKeys, request_keys
from services.cache.verify import AcceptAll, HitVerifier
from shared.chat import Finish, Sampling, Turn
from shared.errors import InvalidRequest, NotReady
from shared.pricing import TokenUsage

# Neighbours examined per semantic lookup: more than one, so that an expired (or, later, a
# verification-rejected) nearest entry does not hide a live one just behind it.
SEARCH_K = 8


class HitKind(StrEnum):
    MISS = "miss"
    EXACT = "exact"
    SEMANTIC = "semantic"


@dataclass(frozen=True)
class CacheRequest:
    """A request as the cache sees it."""

    tenant_id: str
    model_class: str
    turns: tuple[Turn, ...]
    sampling: Sampling = field(default_factory=Sampling)
    # False limits a lookup to exact matches.
    allow_semantic: bool = True


@dataclass(frozen=True)
class CachedAnswer:
    """An accepted answer and what producing it took."""

    content: str
    model: str
    usage: TokenUsage = field(default_factory=TokenUsage)
    finish: Finish = Finish.STOP


@dataclass(frozen=True)
class LookupResult:
    kind: HitKind
    answer: CachedAnswer | None = None
    # Cosine similarity in [0, 1] of the matched entry; 1 for exact hits, 0 for misses.
    similarity: float = 0.0
    entry_id: str = ""
    # Candidates above the threshold that verification turned down during this lookup.
    rejected: int = 0

    @property
    def hit(self) -> bool:
        return self.kind is not HitKind.MISS


MISS = LookupResult(HitKind.MISS)


@dataclass(frozen=True)
class CachePolicy:
    min_similarity: float
    ttl_s: float
    max_entries: int


class QueryEmbedder(Protocol):
    """What the cache needs from the embedding side; EmbeddingBatcher provides it."""

    @property
    def dim(self) -> int: ...

    @property
    def ready(self) -> bool: ...

    async def embed(self, text: str) -> NDArray[np.float32]: ...


@dataclass(eq=False)
class _Entry:
    entry_id: str
    exact_key: str
    namespace: str
    answer: CachedAnswer
    expires_at: float
    vector_id: int | None
    # The last user turn the answer was for; verification compares new queries against it.
    query: str | None = None


class _Namespace:
    """The entries sharing one namespace key, in least-recently-used-first order."""

    def __init__(self, index: VectorIndex) -> None:
        self.index = index
        self.entries: OrderedDict[str, _Entry] = OrderedDict()
        self.by_vector: dict[int, _Entry] = {}
        # (expires_at, entry_id) min-heap, so eviction finds expired entries without a scan.
        # Items of entries already gone stay until popped or compacted.
        self.expiries: list[tuple[float, str]] = []


class SemanticCache:
    """Exact and semantic lookup of accepted answers, namespaced by tenant and context."""

    def __init__(
        self,
        embedder: QueryEmbedder,
        policy: CachePolicy,
        *,
        index_factory: Callable[[int], VectorIndex] = FaissIndex,
        verifier: HitVerifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Wall-clock time by default, not monotonic: expiry times will be persisted and must
        # keep their meaning across a restart.
        self._embedder = embedder
        self._policy = policy
        self._index_factory = index_factory
        self._verifier: HitVerifier = verifier or AcceptAll()
        self._clock = clock
        self._exact: dict[str, _Entry] = {}
        self._namespaces: dict[str, _Namespace] = {}
        self._vector_ids = itertools.count(1)

    @property
    def ready(self) -> bool:
        return self._embedder.ready

    def __len__(self) -> int:
        return len(self._exact)

    async def lookup(self, request: CacheRequest) -> LookupResult:
        """Finds the exact entry, else the most similar live entry above the threshold."""
        keys = _keys(request)
        self._require_ready()
        entry = self._exact.get(keys.exact)
        if entry is not None:
            if entry.expires_at > self._clock():
                self._touch(entry)
                return LookupResult(HitKind.EXACT, entry.answer, 1.0, entry.entry_id)
            self._drop(entry)
        if not request.allow_semantic or keys.query is None:
            return MISS
        if keys.namespace not in self._namespaces:
            return MISS  # nothing to compare with, so skip the embedding
        vector = await self._embedder.embed(keys.query)
        namespace = self._namespaces.get(keys.namespace)
        if namespace is None:
            return MISS
        return self._nearest(namespace, keys.namespace, vector, keys.query)

    async def store(
        self, request: CacheRequest, answer: CachedAnswer, *, ttl_s: float | None = None
    ) -> str:
        """Stores an answer, replacing any entry with the same exact key; returns its id."""
        keys = _keys(request)
        if not answer.content:
            raise InvalidRequest("content is required: an empty answer is never cached")
        if ttl_s is not None and not ttl_s > 0:
            raise InvalidRequest(f"ttl must be positive, got {ttl_s}s")
        self._require_ready()
        vector = None if keys.query is None else await self._embedder.embed(keys.query)
        now = self._clock()
        previous = self._exact.get(keys.exact)
        if previous is not None:
            self._drop(previous)
        namespace = self._namespaces.get(keys.namespace)
        if namespace is None:
            namespace = _Namespace(self._index_factory(self._embedder.dim))
            self._namespaces[keys.namespace] = namespace
        entry = _Entry(
            entry_id=uuid.uuid4().hex,
            exact_key=keys.exact,
            namespace=keys.namespace,
            answer=answer,
            expires_at=now + (self._policy.ttl_s if ttl_s is None else ttl_s),
            vector_id=None if vector is None else next(self._vector_ids),
            query=keys.query,
        )
        if vector is not None and entry.vector_id is not None:
            namespace.index.add(entry.vector_id, vector)
            namespace.by_vector[entry.vector_id] = entry
        namespace.entries[entry.entry_id] = entry
        heapq.heappush(namespace.expiries, (entry.expires_at, entry.entry_id))
        self._exact[keys.exact] = entry
        self._evict(namespace, now)
        return entry.entry_id

    def _nearest(
        self, namespace: _Namespace, namespace_key: str, vector: NDArray[np.float32], query: str
    ) -> LookupResult:
        now = self._clock()
        rejected = 0
        for vector_id, score in namespace.index.search(vector, SEARCH_K):
            if score < self._policy.min_similarity:
                break  # results come best first
            entry = namespace.by_vector.get(vector_id)
            if entry is None:
                continue
            if entry.expires_at <= now:
                self._drop(entry)
                continue
            # Float rounding can put the inner product of unit vectors a hair above 1.
            similarity = min(1.0, max(0.0, score))
            verdict = self._verifier.verify(query, entry.query or "", similarity, namespace_key)
            if not verdict.accepted:
                rejected += 1
                continue
            self._touch(entry)
            return LookupResult(
                HitKind.SEMANTIC, entry.answer, similarity, entry.entry_id, rejected
            )
        return LookupResult(HitKind.MISS, rejected=rejected) if rejected else MISS

    def _evict(self, namespace: _Namespace, now: float) -> None:
        """Over capacity, drops expired entries first, then the least recently used."""
        while len(namespace.entries) > self._policy.max_entries and namespace.expiries:
            expires_at, entry_id = namespace.expiries[0]
            if expires_at > now:
                break
            heapq.heappop(namespace.expiries)
            entry = namespace.entries.get(entry_id)
            if entry is not None and entry.expires_at == expires_at:
                self._drop(entry)
        while len(namespace.entries) > self._policy.max_entries:
            oldest = next(iter(namespace.entries.values()))
            self._drop(oldest)
        # Heap items of dropped entries would otherwise pile up for a whole TTL.
        if len(namespace.expiries) > 2 * len(namespace.entries) + 64:
            namespace.expiries = [(e.expires_at, e.entry_id) for e in namespace.entries.values()]
            heapq.heapify(namespace.expiries)

    def _touch(self, entry: _Entry) -> None:
        self._namespaces[entry.namespace].entries.move_to_end(entry.entry_id)

    def _drop(self, entry: _Entry) -> None:
        namespace = self._namespaces[entry.namespace]
        del namespace.entries[entry.entry_id]
        if entry.vector_id is not None:
            namespace.index.remove([entry.vector_id])
            del namespace.by_vector[entry.vector_id]
        if self._exact.get(entry.exact_key) is entry:
            del self._exact[entry.exact_key]
        # Every distinct conversation prefix makes a namespace; empty ones must not linger.
        if not namespace.entries:
            del self._namespaces[entry.namespace]

    def _require_ready(self) -> None:
        if not self._embedder.ready:
            raise NotReady("the embedding model is still loading")


def _keys(request: CacheRequest) -> RequestKeys:
    if not request.tenant_id:
        raise InvalidRequest("context.tenant_id is required")
    if not request.turns:
        raise InvalidRequest("messages must not be empty")
    return request_keys(request.tenant_id, request.model_class, request.turns, request.sampling)

"""Test doubles for the cache: a deterministic embedder and a settable clock."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from services.cache.adaptive import IndexPolicy
from services.cache.cache import CachePolicy, SemanticCache
from services.cache.model import CacheRequest
from services.cache.records import CachedAnswer
from services.cache.store import EntryStore
from shared.chat import Role, Sampling, Turn
from shared.embedding.minilm import EmbeddingBatcher

_WORD = re.compile(r"[a-z0-9']+")


class HashingEmbedder:
    """Bag-of-words feature hashing, L2-normalised.

    Texts with the same words get identical vectors, and sharing most words gives a high
    cosine, e.g. 5 shared words out of 5 and 6 give 5 / sqrt(30) = 0.913. No model, no I/O.
    """

    def __init__(self, dim: int = 512, *, loaded: bool = True) -> None:
        self.dim = dim
        self.loaded = loaded
        self.batches: list[list[str]] = []

    def load(self) -> None:
        self.loaded = True

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.batches.append(list(texts))
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest())
                sign = 1.0 if digest & 1 else -1.0
                vectors[row, (digest >> 1) % self.dim] += sign
            norm = np.linalg.norm(vectors[row])
            if norm > 0:
                vectors[row] /= norm
        return vectors


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def make_cache(
    *,
    min_similarity: float = 0.85,
    ttl_s: float = 3600.0,
    max_entries: int = 100,
    max_bytes: int = 1 << 30,
    ann_threshold: int = 20_000,
    clock: FakeClock | None = None,
    embedder: HashingEmbedder | None = None,
    store: EntryStore | None = None,
    start: bool = True,
) -> SemanticCache:
    """A started SemanticCache over the real batcher and indexes, with a hashing embedder."""
    batcher = EmbeddingBatcher(embedder or HashingEmbedder())
    policy = CachePolicy(
        min_similarity=min_similarity,
        ttl_s=ttl_s,
        max_entries=max_entries,
        max_bytes=max_bytes,
        index=IndexPolicy(ann_threshold=ann_threshold),
    )
    cache = SemanticCache(batcher, policy, store=store, clock=clock or FakeClock())
    if start:
        if store is not None:
            await store.open()  # serve() opens the store before the cache starts, too
        await cache.start()
    return cache


def ask(
    question: str,
    *,
    tenant: str = "acme",
    model_class: str = "small",
    history: Sequence[Turn] = (),
    sampling: Sampling | None = None,
    allow_semantic: bool = True,
) -> CacheRequest:
    """A request whose last user turn is `question`, after `history`."""
    return CacheRequest(
        tenant_id=tenant,
        model_class=model_class,
        turns=(*history, Turn(Role.USER, question)),
        sampling=sampling or Sampling(),
        allow_semantic=allow_semantic,
    )


def answer(content: str = "Paris.") -> CachedAnswer:
    return CachedAnswer(content=content, model="gpt-4o-mini")

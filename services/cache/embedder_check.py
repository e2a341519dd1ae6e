"""Keeps a store's vectors and the service's embedder in one vector space.

A store records the identity of the embedder that made its vectors (model digest and export
variant, shared/embedding/files.py). At start, before any entry is loaded, the cache compares
it with its own embedder's; on a mismatch it either re-embeds every stored query with its own
embedder and rewrites the entries (policy "reembed", the default), or refuses to start
(policy "refuse"), naming both identities. Comparing vectors of two models would serve hits
by a similarity that means nothing.

A store that recorded no identity was written before identities existed, when the only
embedder was the fp32 one (ONNX fp32 or torch, the same vectors): it is adopted by an fp32
embedder and treated as a mismatch by any other, unless it holds no vector at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence

from services.cache.config import MismatchPolicy
from services.cache.records import EntryRecord
from services.cache.store import EntryStore, StoreCorrupt
from shared.embedding.minilm import Vectors

LOG = logging.getLogger(__name__)
UNRECORDED = "an unrecorded embedder (written before identities were kept)"
# Queries embedded per model call while re-embedding.
REEMBED_BATCH = 32


class EmbedderMismatch(StoreCorrupt):
    """The store's vectors come from another embedder and the policy is to refuse."""


async def reconcile(
    store: EntryStore,
    identity: str,
    policy: MismatchPolicy,
    embed: Callable[[Sequence[str]], Vectors],
    dim: int,
) -> int:
    """Makes the store's vectors `identity`'s; returns how many were re-embedded."""
    stored = await store.embedder()
    if stored == identity:
        return 0
    records = await _vector_records(store, dim)
    if stored is None and (identity.endswith("/fp32") or not records):
        await store.set_embedder(identity)
        return 0
    found = stored or UNRECORDED
    if policy == "refuse":
        raise EmbedderMismatch(
            f"{store.description} holds vectors made by {found}, but this cache embeds with "
            f"{identity}; set SLUICE_CACHE_EMBEDDER_MISMATCH=reembed to re-embed its "
            f"{len(records)} stored queries, or use another store"
        )
    LOG.warning(
        "%s holds vectors made by %s; re-embedding %d stored queries with %s",
        store.description,
        found,
        len(records),
        identity,
    )
    for start in range(0, len(records), REEMBED_BATCH):
        batch = records[start : start + REEMBED_BATCH]
        vectors = await asyncio.to_thread(embed, [r.query or "" for r in batch])
        for record, vector in zip(batch, vectors, strict=True):
            await store.put(dataclasses.replace(record, vector=vector), None)
    # Recorded last: a start interrupted halfway re-embeds again next time, never half-way.
    await store.set_embedder(identity)
    return len(records)


async def _vector_records(store: EntryStore, dim: int) -> list[EntryRecord]:
    """Every stored entry with a query vector, read in full before any is rewritten (a
    rewrite moves a row past the store's read position). Entries whose vector is not of
    `dim` come back as BadRecord and are left to the cache's own load, which skips them."""
    found: list[EntryRecord] = []
    async for batch in store.load(dim):
        found += [r for r in batch if isinstance(r, EntryRecord) and r.query is not None]
    return found

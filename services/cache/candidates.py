"""A semantic lookup's candidates: the live nearest entries of a namespace, as verifier pairs,
and the lookup result the verifier's choice among them gives.

Kept apart from cache.py so that the loop the verifier sees (verify.first_accepted over these
pairs) reads in one place; verifiers/replay.py builds the same pairs from precomputed vectors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from services.cache.entries import Entry, Namespace
from services.cache.model import HitKind, LookupResult, RejectedCandidate
from services.cache.verify import Choice, Pair, clamp_similarity

# Neighbours examined per semantic lookup: more than one, so that an expired, too old or
# verification-rejected nearest entry does not hide a live one just behind it.
SEARCH_K = 8


@dataclass(frozen=True)
class Search:
    """One lookup's query, in the namespace it may match in."""

    text: str
    namespace_key: str
    vector: NDArray[np.float32]
    min_similarity: float
    oldest: float  # created_at below this is too old (max_age); -inf without one
    now: float


def candidates(
    namespace: Namespace, search: Search, expired: list[Entry]
) -> Iterator[tuple[Entry, Pair]]:
    """Live neighbours at or above the threshold, best first, as verifier pairs; expired ones
    met on the way are appended to `expired`. Lazy, so no vector is copied past the hit."""
    for vector_id, score in namespace.index.search(search.vector, SEARCH_K):
        if score < search.min_similarity:
            break  # results come best first
        entry = namespace.by_vector.get(vector_id)
        if entry is None or entry.created_at < search.oldest:
            continue
        if entry.expires_at <= search.now:
            expired.append(entry)
            continue
        pair = Pair(
            search.text,
            entry.query or "",
            clamp_similarity(score),
            search.namespace_key,
            search.vector,
            namespace.index.vector(vector_id),
            entry.answer.content,
        )
        yield entry, pair


def chosen(choice: Choice[Entry], namespace_key: str) -> LookupResult:
    """A semantic hit on the accepted entry; else a miss that names the nearest rejected entry
    (if any), so the caller can shadow-check it against the fresh answer."""
    found, pair, rejected = choice.item, choice.pair, choice.rejected
    if found is not None and pair is not None:
        return LookupResult(
            HitKind.SEMANTIC, found.answer, pair.similarity, found.entry_id, namespace_key, rejected
        )
    nearest = None
    if choice.nearest_rejected is not None:
        entry, similarity = choice.nearest_rejected.item, choice.nearest_rejected.pair.similarity
        nearest = RejectedCandidate(entry.entry_id, entry.answer.content, similarity)
    return LookupResult(
        HitKind.MISS, namespace=namespace_key, rejected=rejected, nearest_rejected=nearest
    )

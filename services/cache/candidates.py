"""A semantic lookup's candidates: the live nearest entries of a namespace, as verifier pairs,
and the lookup result the verifier's choice among them gives.

Kept apart from cache.py so that the loop the verifier sees (verify.first_accepted over these
pairs) reads in one place; verifiers/replay.py builds the same pairs from precomputed vectors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from services.cache.entries import Entry, Namespace
from services.cache.model import HitKind, LookupResult, RejectedCandidate
from services.cache.verify import (
    Choice,
    HitVerifier,
    Pair,
    Rejected,
    clamp_similarity,
    first_accepted,
)

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
    max_wrong_rate: float | None = None  # the tenant's error bound, if it set one


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


class Evidence(Protocol):
    """What a tenant's error bound asks of the feedback (feedback.FeedbackBook)."""

    def admits(self, entry_id: str, pair: Pair, max_wrong_rate: float) -> bool: ...

    def vetoed(self, pair: Pair) -> str: ...


def choose(
    namespace: Namespace,
    search: Search,
    verifier: HitVerifier,
    evidence: Evidence,
    expired: list[Entry],
) -> Choice[Entry]:
    """The verifier's choice among the candidates, or, under a tenant's error bound, the first
    candidate the evidence admits."""
    found = candidates(namespace, search, expired)
    if search.max_wrong_rate is None:
        return first_accepted(verifier, found)
    return first_within_bound(evidence, search.max_wrong_rate, found)


def first_within_bound(
    evidence: Evidence, max_wrong_rate: float, items: Iterable[tuple[Entry, Pair]]
) -> Choice[Entry]:
    """verify.first_accepted under a tenant's bound: the verifier's checks still veto, but its
    own bar gives way to what the outcomes prove (verifiers/calibration.py). A candidate no
    check vetoes and the evidence does not admit is unproven: turned down, and the first such
    becomes the miss's nearest rejected candidate, whose shadow check is the exploration that
    gathers the missing evidence without serving an answer nobody vouched for."""
    rejected = 0
    nearest: Rejected[Entry] | None = None
    for entry, pair in items:
        if evidence.vetoed(pair):
            rejected += 1
            continue
        if evidence.admits(entry.entry_id, pair, max_wrong_rate):
            return Choice(entry, pair, rejected, nearest)
        rejected += 1
        if nearest is None:
            nearest = Rejected(entry, pair)
    return Choice(None, None, rejected, nearest)


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

"""Hit verification: a second check after the vector search, so look-alike requests that need a
different answer (negations, other numbers, dates, entities, units) are not served each other's
answers.

This module holds the contract between the cache and its verifiers (`Pair`, `HitVerifier`) and
the one loop that asks a verifier about a lookup's candidates (`first_accepted`). The cache and
the offline replay (verifiers/replay.py) both run that loop, so what the benchmark measures is
what the service does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import NDArray

T = TypeVar("T")


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    # Which check rejected the candidate, e.g. "negation"; empty when accepted.
    reason: str = ""
    # True when a check turned the candidate down whatever its score (a veto), False when the
    # score fell short of the bar: only the latter says anything about where the bar belongs.
    vetoed: bool = False


ACCEPT = Verdict(True)


@dataclass(frozen=True, eq=False)
class Pair:
    """A lookup's query and one stored candidate, as a verifier sees them.

    The vectors are the unit-length embeddings the index compared (None where a caller has
    none, e.g. a hand-written test); a pair model scores them directly, since the cosine alone
    throws away which directions differ. `candidate_answer` is the stored answer's text.
    """

    query: str
    candidate: str
    similarity: float  # cosine in [0, 1]
    namespace: str
    query_vector: NDArray[np.float32] | None = None
    candidate_vector: NDArray[np.float32] | None = None
    candidate_answer: str = ""


class HitVerifier(Protocol):
    """Decides whether a stored request's answer may serve a new request."""

    def verify(self, pair: Pair) -> Verdict: ...


@runtime_checkable
class ScoresInBatches(Protocol):
    """A verifier whose scoring is heavy enough (a model run) to batch a lookup's candidates
    and run them in a worker thread: the cache awaits `prepare` off the event loop before its
    verification loop, and `verify` then reads what `prepare` scored."""

    def prepare(self, pairs: Sequence[Pair]) -> None: ...


class LearnsFromFeedback(Protocol):
    """A verifier that adapts (e.g. per-namespace thresholds) from labelled outcomes.

    Called with a served hit that the router's quality gate or a user reported wrong or
    confirmed right, or with a shadow-checked candidate: on a miss, the lookup returns the
    nearest candidate that fell short of the bar (`Choice.nearest_rejected`), the caller compares
    its answer with the fresh one and reports the verdict with ReportHit's `shadow` flag.
    Returns the score the outcome was recorded under (a probability or cosine in [0, 1]), or
    None when the verifier keeps no per-namespace state.
    """

    def record_feedback(self, pair: Pair, correct: bool) -> float | None: ...


class AcceptAll:
    """No verification beyond the similarity threshold (the bare-threshold baseline)."""

    def verify(self, pair: Pair) -> Verdict:
        return ACCEPT


def clamp_similarity(score: float) -> float:
    """Float rounding can put the inner product of unit vectors a hair outside [0, 1]."""
    return min(1.0, max(0.0, score))


@dataclass(frozen=True)
class Rejected(Generic[T]):
    """A candidate verification turned down, with the pair it judged."""

    item: T
    pair: Pair


@dataclass(frozen=True)
class Choice(Generic[T]):
    """The first accepted candidate (None when all were rejected), how many were rejected, and
    the most similar of those that fell short of the bar (candidates come best first; vetoed
    ones are skipped, as no bar would have served them). A miss hands that one to the caller
    for a shadow check, the only evidence below the namespace's bar."""

    item: T | None
    pair: Pair | None
    rejected: int
    nearest_rejected: Rejected[T] | None = None


def first_accepted(verifier: HitVerifier, candidates: Iterable[tuple[T, Pair]]) -> Choice[T]:
    """Asks the verifier about each candidate in order (best first) and stops at the first it
    accepts. The caller has already cut the candidates at the similarity threshold."""
    rejected = 0
    nearest: Rejected[T] | None = None
    for item, pair in candidates:
        verdict = verifier.verify(pair)
        if verdict.accepted:
            return Choice(item, pair, rejected, nearest)
        rejected += 1
        if nearest is None and not verdict.vetoed:
            nearest = Rejected(item, pair)
    return Choice(None, None, rejected, nearest)

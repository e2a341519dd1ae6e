"""Hit verification: a second check after the vector search, so look-alike requests that need a
different answer (negations, other numbers, dates, entities, units) are not served each other's
answers.

This module holds the contract between the cache and its verifiers; the checks themselves
implement `HitVerifier`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    # Which check rejected the candidate, e.g. "negation"; empty when accepted.
    reason: str = ""


ACCEPT = Verdict(True)


class HitVerifier(Protocol):
    """Decides whether a stored request's answer may serve a new request."""

    def verify(self, query: str, candidate: str, similarity: float, namespace: str) -> Verdict:
        """query: the new last user turn; candidate: the stored one; similarity: their cosine."""
        ...


class LearnsFromFeedback(Protocol):
    """A verifier that adapts (e.g. per-namespace thresholds) from labelled outcomes.

    Called with a served hit that the router's quality gate or a user reported wrong or
    confirmed right, or with a shadow-checked candidate: on a miss, the fresh answer compared
    with the best candidate that verification turned down.
    """

    def record_feedback(
        self, query: str, candidate: str, similarity: float, namespace: str, correct: bool
    ) -> None: ...


class AcceptAll:
    """No verification beyond the similarity threshold (the bare-threshold baseline)."""

    def verify(self, query: str, candidate: str, similarity: float, namespace: str) -> Verdict:
        return ACCEPT

"""Per-namespace acceptance thresholds, calibrated from labelled feedback.

Why per namespace: how close two *different* questions sit in embedding space depends on what
a namespace holds. A bank's support bot stores dozens of near-identical intents ("card
arrival" / "card delivery estimate"), where a score that is safe for general questions still
serves wrong answers; a namespace of clearly distinct intents can afford a lower bar.

How: a verifier's score (the learned model's probability, or the cosine for the rule
verifier) is cut into equal-width bins, and each namespace counts, per bin, the labelled
outcomes it has seen: a served hit reported wrong (router quality gate, user flag) or
confirmed, or a shadow-checked candidate (on a miss, Lookup returns the nearest candidate whose
score fell short of the bar, and the router reports whether its answer agreed with the fresh
one: ReportHit with `shadow` set, which never removes the entry). Once a namespace has
`min_feedback` outcomes, its threshold is the lowest bin edge at which the wrong-answer rate of
everything at or above it stays within the target (1%); before that it uses the shared
threshold fitted offline. Aggregating from the edge upwards, rather than judging each bin
alone, gives the most hits under that target, which is exactly the goal.

Served hits alone give no evidence below the bar, so they can only raise a namespace's bar:
the safe direction. Shadow checks supply outcomes below it, and the solve is not clamped to
the shared threshold, so a namespace whose rejected candidates keep agreeing with the fresh
answers gets a lower bar than the shared one. State is bounded: at most `max_namespaces`
namespaces (least recently used dropped).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

DEFAULT_BINS = 100
# Enough outcomes that a 1% target means something: with 200, two wrong answers near the top
# already move the bar.
DEFAULT_MIN_FEEDBACK = 200


def bin_of(score: float, bins: int) -> int:
    return min(bins - 1, max(0, math.floor(score * bins)))


def solve_threshold(
    seen: NDArray[np.float64], wrong: NDArray[np.float64], target_wrong_rate: float
) -> float:
    """Lowest bin edge whose cumulative wrong rate (edge and above) is within the target.

    Bin i covers scores in [i / bins, (i + 1) / bins). Returns 1.0 (serve nothing) when even
    the top bin with evidence is worse than the target.
    """
    bins = len(seen)
    total_seen = np.cumsum(seen[::-1])[::-1]
    total_wrong = np.cumsum(wrong[::-1])[::-1]
    ok = (total_seen > 0) & (total_wrong <= target_wrong_rate * total_seen + 1e-9)
    # Only bins holding evidence can be edges; the empty bins below them say nothing.
    candidates = np.flatnonzero(ok & (seen > 0))
    return float(candidates.min() / bins) if candidates.size else 1.0


@dataclass
class _Feedback:
    seen: NDArray[np.float64]
    wrong: NDArray[np.float64]
    threshold: float | None = None  # cached until the next outcome


@dataclass
class NamespaceCalibrator:
    """Chooses each namespace's minimum score: shared until it has enough feedback."""

    base_threshold: float
    target_wrong_rate: float = 0.01
    min_feedback: int = DEFAULT_MIN_FEEDBACK
    bins: int = DEFAULT_BINS
    max_namespaces: int = 10_000
    _namespaces: OrderedDict[str, _Feedback] = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.base_threshold <= 1.0:
            raise ValueError(f"base_threshold must be in [0, 1], got {self.base_threshold}")
        if not 0.0 < self.target_wrong_rate < 1.0:
            raise ValueError(f"target_wrong_rate must be in (0, 1), got {self.target_wrong_rate}")

    def threshold(self, namespace: str) -> float:
        """The minimum score a candidate in `namespace` needs."""
        feedback = self._namespaces.get(namespace)
        if feedback is None:
            return self.base_threshold
        self._namespaces.move_to_end(namespace)
        if feedback.threshold is None:
            enough = feedback.seen.sum() >= self.min_feedback
            feedback.threshold = (
                solve_threshold(feedback.seen, feedback.wrong, self.target_wrong_rate)
                if enough
                else self.base_threshold
            )
        return feedback.threshold

    def record(self, namespace: str, score: float, correct: bool) -> None:
        """One labelled outcome: a candidate with this score was (or would have been) right."""
        self.restore(namespace, score, seen=1, wrong=0 if correct else 1)

    def clear(self) -> None:
        """Forgets every namespace's feedback (before reloading the stored counts)."""
        self._namespaces.clear()

    def restore(self, namespace: str, score: float, *, seen: int, wrong: int) -> None:
        """`seen` outcomes at this score, `wrong` of them wrong (reloading persisted counts)."""
        if not 0 <= wrong <= seen:
            raise ValueError(f"need 0 <= wrong <= seen, got wrong={wrong}, seen={seen}")
        feedback = self._namespaces.get(namespace)
        if feedback is None:
            feedback = _Feedback(np.zeros(self.bins), np.zeros(self.bins))
            self._namespaces[namespace] = feedback
            while len(self._namespaces) > self.max_namespaces:
                self._namespaces.popitem(last=False)
        self._namespaces.move_to_end(namespace)
        index = bin_of(score, self.bins)
        feedback.seen[index] += seen
        feedback.wrong[index] += wrong
        feedback.threshold = None

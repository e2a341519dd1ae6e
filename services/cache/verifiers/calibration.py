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

**A bound the tenant sets** (`max_wrong_rate` on Lookup; after vCache, Schroeder et al., ICLR
2026, which learns a threshold per cached prompt online and explores when unsure). The same
counts answer a stricter question: not "where is the point estimate of the wrong rate within
1%", but "where is a 95% upper confidence bound on it within the tenant's bound". With a bound,
a candidate is served only when

1. no outcome of its own entry was wrong at this score or above (`EntryEvidence`: a stored
   question once found to need another answer at a given closeness is not trusted at that
   closeness again), and
2. either its namespace's outcomes at and above the candidate's score bin have an upper
   bound (`wrong_rate_upper`) within the tenant's bound (`bound_threshold`), or the entry's own
   outcomes at or below this score do (it was right for questions further away than this one,
   and a wrong rate that falls as the score rises is what every threshold assumes).

Anything else is unproven and treated as a miss, named as the miss's nearest rejected
candidate, so the router's shadow check compares its answer with the fresh one: exactly
vCache's exploration, at no risk to the caller, and the evidence that lets the bar come down.
Why this keeps the bound: every served score lies at or above an edge where, with 95%
confidence, the wrong rate of all outcomes from that edge up is within the bound; served hits
are the scores from that edge up, so their wrong rate is too, as long as the questions asked
look like those that gave the outcomes. Shadow outcomes sit below the bar and audits sample the
served ones above it, so the counts over-weight the closer-to-the-bar (worse) scores, which
errs on the safe side. A cold namespace serves nothing semantic until its outcomes prove a bar:
under a 1% bound that takes 299 clean outcomes above it (the bound on 0 wrong in n is about
3 / n), under 5% 59.
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
# One-sided 95% normal quantile for the upper confidence bound on a wrong rate.
BOUND_Z = 1.6448536269514722
BOUND_ALPHA = 0.05
# Per-entry evidence kept for this many entries (least recently reported dropped).
MAX_ENTRY_EVIDENCE = 100_000


def wrong_rate_upper(wrong: float, seen: float, z: float = BOUND_Z) -> float:
    """One-sided 95% upper confidence bound on a wrong rate from `wrong` of `seen` outcomes:
    the exact Clopper-Pearson bound (the rate at which seeing `wrong` or fewer has probability
    5%), so it never claims more than the counts show; 1.0 without outcomes. The closed-form
    Wilson bound with continuity correction (Newcombe 1998), which sits just below it, settles
    the clear cases first."""
    if seen <= 0 or wrong >= seen:
        return 1.0
    if wrong <= 0:
        return float(1.0 - BOUND_ALPHA ** (1.0 / seen))
    p = wrong / seen
    root = math.sqrt(max(0.0, z * z + 2.0 - 1.0 / seen + 4.0 * p * (seen * (1.0 - p) - 1.0)))
    low = max(p, (2.0 * seen * p + z * z - 1.0 + z * root) / (2.0 * (seen + z * z)))
    high = 1.0
    # The probability of `wrong` or fewer falls as the rate rises: bisect for where it is 5%.
    log_choose = _log_choose(int(seen), int(wrong))
    for _ in range(48):
        middle = (low + high) / 2.0
        if _binomial_cdf(log_choose, int(seen), middle) > BOUND_ALPHA:
            low = middle
        else:
            high = middle
    return high


def _log_choose(n: int, k: int) -> NDArray[np.float64]:
    """log C(n, j) for j = 0..k."""
    j = np.arange(k, dtype=np.float64)
    return np.concatenate(([0.0], np.cumsum(np.log(n - j) - np.log(j + 1.0))))


def _binomial_cdf(log_choose: NDArray[np.float64], n: int, p: float) -> float:
    j = np.arange(len(log_choose), dtype=np.float64)
    terms = log_choose + j * math.log(p) + (n - j) * math.log1p(-p)
    top = float(terms.max())
    return float(math.exp(top) * np.exp(terms - top).sum())


def bound_threshold(
    seen: NDArray[np.float64], wrong: NDArray[np.float64], max_wrong_rate: float
) -> float:
    """Lowest bin edge whose outcomes from there up have an upper confidence bound on their
    wrong rate within `max_wrong_rate`; infinity (serve nothing) when no edge has that proof."""
    bins = len(seen)
    total_seen = np.cumsum(seen[::-1])[::-1]
    total_wrong = np.cumsum(wrong[::-1])[::-1]
    for index in np.flatnonzero(seen > 0):
        # A point estimate above the bound cannot have an upper bound within it.
        if total_wrong[index] > max_wrong_rate * total_seen[index]:
            continue
        if wrong_rate_upper(total_wrong[index], total_seen[index]) <= max_wrong_rate:
            return float(index / bins)
    return math.inf


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
    bounds: dict[float, float] = field(default_factory=dict)  # bound -> edge, same caching


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

    def bound_threshold(self, namespace: str, max_wrong_rate: float) -> float:
        """The lowest score whose namespace outcomes prove `max_wrong_rate` (module docstring);
        infinity for a namespace without such proof."""
        feedback = self._namespaces.get(namespace)
        if feedback is None:
            return math.inf
        found = feedback.bounds.get(max_wrong_rate)
        if found is None:
            found = bound_threshold(feedback.seen, feedback.wrong, max_wrong_rate)
            feedback.bounds[max_wrong_rate] = found
        return found

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
        feedback.bounds.clear()


@dataclass
class EntryEvidence:
    """Labelled outcomes of single entries, per score bin, for the bound's per-entry rules
    (module docstring). Sparse: most entries have a handful of outcomes or none."""

    bins: int = DEFAULT_BINS
    max_entries: int = MAX_ENTRY_EVIDENCE
    _entries: OrderedDict[str, dict[int, list[int]]] = field(
        default_factory=OrderedDict, repr=False
    )

    def restore(self, entry_id: str, score: float, *, seen: int, wrong: int) -> None:
        if not 0 <= wrong <= seen:
            raise ValueError(f"need 0 <= wrong <= seen, got wrong={wrong}, seen={seen}")
        counts = self._entries.setdefault(entry_id, {})
        self._entries.move_to_end(entry_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        slot = counts.setdefault(bin_of(score, self.bins), [0, 0])
        slot[0] += seen
        slot[1] += wrong

    def clear(self) -> None:
        self._entries.clear()

    def refuses(self, entry_id: str, score: float) -> bool:
        """True when the entry was found wrong at this score's bin or above."""
        at = bin_of(score, self.bins)
        counts = self._entries.get(entry_id, {})
        return any(wrong and index >= at for index, (_, wrong) in counts.items())

    def proves(self, entry_id: str, score: float, max_wrong_rate: float) -> bool:
        """True when the entry's own outcomes at or below this score bound its wrong rate
        within `max_wrong_rate`."""
        at = bin_of(score, self.bins)
        counts = self._entries.get(entry_id, {})
        seen = sum(s for index, (s, _) in counts.items() if index <= at)
        wrong = sum(w for index, (_, w) in counts.items() if index <= at)
        return seen > 0 and wrong_rate_upper(wrong, seen) <= max_wrong_rate

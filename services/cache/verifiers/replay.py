"""Replays the cache's semantic lookup loop offline, to evaluate and train verifiers.

`simulate` runs exactly what SemanticCache does for a lookup (exact text first, then the top
SEARCH_K stored neighbours at or above the threshold, best first, as `Pair`s with both vectors
and the stored answer, through the cache's own `verify.first_accepted`) but on precomputed
vectors, so one set of embeddings can score many
verifier configurations in seconds. The benchmark (benchmarks/cache_quality.py) checks that the
running service gives the same answers. Pure numpy; no gRPC, no model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.cache.verifiers.train import LabelledPair
from services.cache.verify import (
    ACCEPT,
    HitVerifier,
    LearnsFromFeedback,
    Pair,
    Verdict,
    clamp_similarity,
    first_accepted,
)

# Neighbours examined per lookup; must equal services.cache.candidates.SEARCH_K (a test checks).
SEARCH_K = 8
Vectors = Mapping[str, NDArray[np.float32]]


@dataclass(frozen=True)
class Probe:
    text: str
    expected: str | None  # the right answer's label; None: must miss (non-duplicate, oos)
    fit: bool


@dataclass
class Space:
    key: str
    entries: dict[str, str] = field(default_factory=dict)  # stored text -> answer label
    probes: list[Probe] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    probe: Probe
    served: str | None  # the answer label served; None for a miss
    similarity: float = 0.0  # of the served entry; 1 for an exact hit


Observer = Callable[[Space, Probe, Pair], None]


def simulate(
    spaces: Sequence[Space],
    vectors: Vectors,
    verifier: HitVerifier,
    min_similarity: float,
    *,
    observe: Observer | None = None,
) -> list[Outcome]:
    """The cache's lookup loop on precomputed vectors: exact text first, then the top
    SEARCH_K neighbours at or above min_similarity, best first, the first accepted served.

    With `observe`, the fit probes run first and every candidate they examine is reported to
    it; feedback uses this to show a verifier labelled (shadow-checked) traffic before the
    held-back probes."""
    outcomes: list[Outcome] = []
    for space in spaces:
        outcomes += _simulate_space(space, vectors, verifier, min_similarity, observe)
    return outcomes


def _simulate_space(
    space: Space,
    vectors: Vectors,
    verifier: HitVerifier,
    min_similarity: float,
    observe: Observer | None,
) -> list[Outcome]:
    texts = list(space.entries)
    probes = space.probes
    similarities = (
        np.stack([vectors[p.text] for p in probes]) @ np.stack([vectors[t] for t in texts]).T
    )
    top = np.argsort(-similarities, axis=1, kind="stable")[:, :SEARCH_K]
    # Fit probes first when observed, so what they teach applies to the held-back ones;
    # outcomes keep the probes' order either way.
    order = sorted(range(len(probes)), key=lambda i: not probes[i].fit) if observe else None
    outcomes: list[Outcome | None] = [None] * len(probes)
    for row in order or range(len(probes)):
        probe = probes[row]
        served = space.entries.get(probe.text)  # exact key: same text, same namespace
        best = 0.0 if served is None else 1.0
        if served is None:
            row_sims, row_top = similarities[row], top[row]
            pairs = _pairs(space, probe, texts, vectors, row_sims, row_top, min_similarity)
            judge = verifier
            if observe is not None and probe.fit:
                judge = _Observed(verifier, space, probe, observe)
            choice = first_accepted(judge, pairs)
            if choice.pair is not None:
                served, best = choice.item, choice.pair.similarity
        outcomes[row] = Outcome(probe, served, best)
    return [o for o in outcomes if o is not None]


def _pairs(
    space: Space,
    probe: Probe,
    texts: Sequence[str],
    vectors: Vectors,
    similarities: NDArray[np.float32],
    top: NDArray[np.int64],
    min_similarity: float,
) -> Iterator[tuple[str, Pair]]:
    """The candidates as services.cache.candidates builds them: (answer, pair), best first."""
    for j in top:
        if similarities[j] < min_similarity:
            break
        text = texts[j]
        pair = Pair(
            probe.text,
            text,
            clamp_similarity(float(similarities[j])),
            space.key,
            vectors[probe.text],
            vectors[text],
            space.entries[text],
        )
        yield space.entries[text], pair


class _Observed:
    """Reports every pair the verifier is asked about, after asking."""

    def __init__(
        self, verifier: HitVerifier, space: Space, probe: Probe, observe: Observer
    ) -> None:
        self._verifier, self._space, self._probe, self._observe = verifier, space, probe, observe

    def verify(self, pair: Pair) -> Verdict:
        verdict = self._verifier.verify(pair)
        self._observe(self._space, self._probe, pair)
        return verdict


def feedback_observer(verifier: LearnsFromFeedback) -> Observer:
    """Reports each fit-split candidate's label to the verifier's per-namespace calibrator."""

    def observe(space: Space, probe: Probe, pair: Pair) -> None:
        verifier.record_feedback(pair, space.entries[pair.candidate] == probe.expected)

    return observe


@dataclass
class Score:
    should_hit: int = 0  # probes whose right answer is stored
    served_right: int = 0
    hits: int = 0
    wrong_hits: int = 0
    must_miss: int = 0  # non-duplicates and out-of-scope queries
    false_hits: int = 0

    def add(self, outcome: Outcome) -> None:
        expected, served = outcome.probe.expected, outcome.served
        self.should_hit += expected is not None
        self.must_miss += expected is None
        self.served_right += served is not None and served == expected
        self.hits += served is not None
        self.wrong_hits += served is not None and served != expected
        self.false_hits += served is not None and expected is None

    def as_json(self) -> dict[str, Any]:
        def rate(n: int, d: int) -> float | None:
            return round(n / d, 4) if d else None

        return {
            "duplicate_hit_rate": rate(self.served_right, self.should_hit),
            "wrong_hit_rate": rate(self.wrong_hits, self.hits),
            "false_hit_rate": rate(self.false_hits, self.must_miss),
            "hits": self.hits,
            "wrong_hits": self.wrong_hits,
            "should_hit": self.should_hit,
            "must_miss": self.must_miss,
        }


HEADLINE_DATASETS = ("qqp", "banking77", "clinc150")


def score(
    outcomes: Mapping[str, Sequence[Outcome]],
    *,
    fit: bool = False,
    overall: Sequence[str] = HEADLINE_DATASETS,
) -> dict[str, Score]:
    """Per dataset plus "overall" (micro-averaged over `overall`), one split only."""
    scores: dict[str, Score] = defaultdict(Score)
    for name, items in outcomes.items():
        for outcome in items:
            if outcome.probe.fit == fit:
                scores[name].add(outcome)
                if name in overall:
                    scores["overall"].add(outcome)
    return dict(scores)


class _RejectAll:
    def verify(self, pair: Pair) -> Verdict:
        return Verdict(False, "collecting")


def labelled_pairs(
    workloads: Mapping[str, Sequence[Space]], vectors: Vectors, floor: float
) -> list[LabelledPair]:
    """Every fit-split candidate the verifier would meet (top neighbours at or above floor)."""
    pairs: list[LabelledPair] = []

    def observe(space: Space, probe: Probe, pair: Pair) -> None:
        pairs.append(LabelledPair(pair, space.entries[pair.candidate] == probe.expected))

    for spaces in workloads.values():
        simulate(spaces, vectors, _RejectAll(), floor, observe=observe)
    return pairs


# --- threshold sweeps: operating points fitted on the fit half, reported on the held-back half


@dataclass(frozen=True)
class SweepPoint:
    param: float
    fit: dict[str, Score]
    held: dict[str, Score]


def sweep(
    workloads: Mapping[str, Sequence[Space]],
    vectors: Vectors,
    params: Sequence[float],
    make: Callable[[float], tuple[HitVerifier, float]],
) -> list[SweepPoint]:
    """Replays every workload once per parameter; make(param) -> (verifier, min_similarity)."""
    points = []
    for param in params:
        verifier, min_similarity = make(param)
        outcomes = {n: simulate(s, vectors, verifier, min_similarity) for n, s in workloads.items()}
        points.append(SweepPoint(param, score(outcomes, fit=True), score(outcomes)))
    return points


def precision_point(
    points: Sequence[SweepPoint], target: float = 0.01, on: str = "overall"
) -> SweepPoint | None:
    """The point with the most right hits on the fit half among those within the wrong target.

    None when no point serves anything right within it."""
    ok = [
        p
        for p in points
        if p.fit[on].served_right and p.fit[on].wrong_hits <= target * p.fit[on].hits
    ]
    return max(ok, key=lambda p: (p.fit[on].served_right, -p.param), default=None)


def recall_point(
    points: Sequence[SweepPoint], hit_rate: float = 0.6, on: str = "overall"
) -> SweepPoint | None:
    """The point with the fewest wrong hits (as a share) on the fit half that keeps hit_rate."""
    ok = [p for p in points if p.fit[on].served_right >= hit_rate * p.fit[on].should_hit]
    return min(ok, key=lambda p: p.fit[on].wrong_hits / max(1, p.fit[on].hits), default=None)


class ScoreThreshold:
    """Accepts when score(query, candidate, similarity) reaches `threshold`.

    Scores go into a shared memo, so a sweep over thresholds scores each pair once."""

    def __init__(
        self,
        scorer: Callable[[Pair], float],
        threshold: float,
        memo: dict[tuple[str, str], float],
    ) -> None:
        self._scorer = scorer
        self._threshold = threshold
        self._memo = memo

    def verify(self, pair: Pair) -> Verdict:
        if pair.query == pair.candidate:
            return ACCEPT
        key = (pair.query, pair.candidate)
        if key not in self._memo:
            self._memo[key] = self._scorer(pair)
        return ACCEPT if self._memo[key] >= self._threshold else Verdict(False, "score")

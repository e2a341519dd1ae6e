"""The offline replay of the lookup loop that the benchmark and training rely on."""

from __future__ import annotations

import numpy as np
import pytest

from services.cache import candidates
from services.cache.verifiers.replay import (
    SEARCH_K,
    Outcome,
    Probe,
    Space,
    labelled_pairs,
    score,
    simulate,
)
from services.cache.verify import ACCEPT, AcceptAll, Pair, Verdict


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


# cos(q, a) = 0.99, cos(q, b) = 0.8 approx; "c" is orthogonal.
VECTORS = {
    "a": unit(1.0, 0.14, 0.0),
    "b": unit(1.0, 0.0, 0.75),
    "c": unit(0.0, 1.0, 0.0),
    "q": unit(1.0, 0.0, 0.0),
}


class RejectText:
    """Rejects one stored text, accepts the rest; remembers what it was asked."""

    def __init__(self, rejected: str) -> None:
        self.rejected = rejected
        self.asked: list[str] = []

    def verify(self, pair: Pair) -> Verdict:
        self.asked.append(pair.candidate)
        return Verdict(False, "test") if pair.candidate == self.rejected else ACCEPT


def space(*probes: Probe) -> Space:
    return Space("ns", {"a": "A", "b": "B", "c": "C"}, list(probes))


def test_search_k_matches_the_cache():
    assert SEARCH_K == candidates.SEARCH_K


def test_best_candidate_first_and_threshold_cuts():
    (outcome,) = simulate([space(Probe("q", "A", fit=False))], VECTORS, AcceptAll(), 0.9)
    assert outcome.served == "A"
    assert outcome.similarity == pytest.approx(float(VECTORS["q"] @ VECTORS["a"]))
    (outcome,) = simulate([space(Probe("q", "A", fit=False))], VECTORS, AcceptAll(), 0.995)
    assert outcome.served is None


def test_a_rejected_candidate_lets_the_next_one_serve():
    verifier = RejectText("a")
    (outcome,) = simulate([space(Probe("q", "B", fit=False))], VECTORS, verifier, 0.7)
    assert outcome.served == "B"
    assert verifier.asked == ["a", "b"]


def test_same_text_is_an_exact_hit_without_verification():
    verifier = RejectText("a")
    (outcome,) = simulate([space(Probe("a", "A", fit=False))], VECTORS, verifier, 0.7)
    assert (outcome.served, outcome.similarity, verifier.asked) == ("A", 1.0, [])


def test_observed_fit_probes_run_first_but_outcomes_keep_their_order():
    seen: list[str] = []
    probes = [Probe("c", None, fit=False), Probe("q", "A", fit=True)]
    outcomes = simulate(
        [space(*probes)],
        VECTORS,
        RejectText("x"),
        0.0,
        observe=lambda s, p, pair: seen.append(p.text),
    )
    assert [o.probe for o in outcomes] == probes
    assert set(seen) == {"q"}  # only fit probes are observed


def test_labelled_pairs_cover_every_fit_candidate_above_the_floor():
    probes = [Probe("q", "B", fit=True), Probe("c", "C", fit=False)]
    pairs = labelled_pairs({"d": [space(*probes)]}, VECTORS, 0.7)
    assert [(p.pair.candidate, p.correct) for p in pairs] == [("a", False), ("b", True)]
    # The pairs carry both vectors and the stored answer, as the cache passes them.
    first = pairs[0].pair
    assert first.query_vector is VECTORS["q"] and first.candidate_vector is VECTORS["a"]
    assert first.candidate_answer == "A"


def test_score_counts_hits_wrong_hits_and_false_hits_per_split():
    outcomes = {
        "qqp": [
            Outcome(Probe("1", "A", fit=False), "A"),
            Outcome(Probe("2", "B", fit=False), "A"),
            Outcome(Probe("3", None, fit=False), "C"),
            Outcome(Probe("4", None, fit=False), None),
            Outcome(Probe("5", "E", fit=True), "E"),
        ]
    }
    held = score(outcomes)["qqp"]
    assert (held.should_hit, held.served_right, held.hits, held.wrong_hits) == (2, 1, 3, 2)
    assert (held.must_miss, held.false_hits) == (2, 1)
    assert held.as_json()["wrong_hit_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert score(outcomes)["overall"] == held
    assert score(outcomes, fit=True)["qqp"].served_right == 1

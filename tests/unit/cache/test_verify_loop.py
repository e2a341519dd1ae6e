"""The service's lookup loop and the offline replay ask the verifier the same questions.

The benchmark's sweeps and the learned model's training run on the replay, so they only stand
for the service if both hand a verifier the same pairs (texts, cosine, namespace, both vectors
and the stored answer) in the same order and serve the same candidate.
"""

from __future__ import annotations

import numpy as np

from services.cache.model import HitKind
from services.cache.verifiers.replay import Probe, Space, simulate
from services.cache.verify import ACCEPT, Pair, Verdict
from tests.unit.cache.fakes import HashingEmbedder, answer, ask, make_cache

# Hashing-embedder cosines with QUERY: 0.926, 0.894, 0.845 and 0 (no ties, so the order is
# the same whichever sort breaks them).
STORED = {
    "what is the capital of france today please": "Paris.",
    "the capital of france": "Still Paris.",
    "what is the capital city of france": "Paris, the city.",
    "how do i bake bread": "Flour, water, salt.",
}
QUERY = "what is the capital of france"


class Recorder:
    """Rejects the first `reject` candidates it is shown, then accepts; keeps every pair."""

    def __init__(self, reject: int) -> None:
        self.reject = reject
        self.pairs: list[Pair] = []

    def verify(self, pair: Pair) -> Verdict:
        self.pairs.append(pair)
        return Verdict(False, "test") if len(self.pairs) <= self.reject else ACCEPT


def seen(pairs: list[Pair]) -> list[tuple[object, ...]]:
    return [(p.query, p.candidate, round(p.similarity, 5), p.candidate_answer) for p in pairs]


def same_vectors(a: list[Pair], b: list[Pair]) -> bool:
    def close(x: np.ndarray | None, y: np.ndarray | None) -> bool:
        return x is not None and y is not None and np.allclose(x, y, atol=1e-6)

    return all(
        close(p.query_vector, q.query_vector) and close(p.candidate_vector, q.candidate_vector)
        for p, q in zip(a, b, strict=True)
    )


async def through_cache(reject: int) -> tuple[list[Pair], str | None, str]:
    cache = await make_cache(min_similarity=0.5)
    for text, content in STORED.items():
        await cache.store(ask(text), answer(content))
    recorder = Recorder(reject)
    cache._verifier = recorder  # a constructor argument; swapped here to record
    result = await cache.lookup(ask(QUERY))
    served = result.answer.content if result.kind is HitKind.SEMANTIC and result.answer else None
    return recorder.pairs, served, result.namespace


def through_replay(reject: int, namespace: str) -> tuple[list[Pair], str | None]:
    texts = [*STORED, QUERY]
    vectors = dict(zip(texts, HashingEmbedder().embed(texts), strict=True))
    space = Space(namespace, dict(STORED), [Probe(QUERY, None, fit=False)])
    recorder = Recorder(reject)
    (outcome,) = simulate([space], vectors, recorder, 0.5)
    return recorder.pairs, outcome.served


async def test_service_and_replay_show_the_verifier_identical_pairs():
    for reject in (0, 1, 2, 10):
        cache_pairs, cache_served, namespace = await through_cache(reject)
        replay_pairs, replay_served = through_replay(reject, namespace)
        assert len(cache_pairs) == min(reject + 1, 3), "3 candidates clear the threshold"
        assert seen(cache_pairs) == seen(replay_pairs)
        assert same_vectors(cache_pairs, replay_pairs)
        assert {p.namespace for p in cache_pairs} == {namespace}
        assert cache_served == replay_served
    # Everything rejected: both miss.
    assert cache_served is None

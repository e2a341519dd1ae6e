"""CachedEmbedder embeds each distinct text once and forgets the least recently used."""

from __future__ import annotations

import numpy as np

from services.compressor.embedder import CachedEmbedder

from .fakes import HashingEmbedder


def test_vectors_match_the_inner_embedder_and_duplicates_are_embedded_once() -> None:
    inner = HashingEmbedder()
    cached = CachedEmbedder(inner, capacity=10)
    texts = ["red apple", "green pear", "red apple"]
    vectors = cached.embed(texts)
    np.testing.assert_allclose(vectors, HashingEmbedder().embed(texts))
    assert inner.calls == [["red apple", "green pear"]]


def test_hits_skip_the_model_and_lru_evicts() -> None:
    inner = HashingEmbedder()
    cached = CachedEmbedder(inner, capacity=2)
    cached.embed(["a one", "b two"])
    cached.embed(["a one"])  # a is now the most recently used
    cached.embed(["c three"])  # evicts b
    cached.embed(["a one", "b two"])
    assert inner.calls == [["a one", "b two"], ["c three"], ["b two"]]


def test_zero_capacity_still_deduplicates_within_a_call() -> None:
    inner = HashingEmbedder()
    cached = CachedEmbedder(inner, capacity=0)
    cached.embed(["x", "x"])
    cached.embed(["x"])
    assert inner.calls == [["x"], ["x"]]


def test_loading_is_delegated() -> None:
    inner = HashingEmbedder(loaded=False)
    cached = CachedEmbedder(inner, capacity=1)
    assert not cached.loaded
    cached.load()
    assert cached.loaded and inner.loaded
    assert cached.embed([]).shape[0] == 0

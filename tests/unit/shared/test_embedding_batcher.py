"""EmbeddingBatcher: concurrent requests share model calls, off the event loop."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from shared.embedding.minilm import EmbeddingBatcher
from tests.unit.cache.fakes import HashingEmbedder


async def test_concurrent_requests_share_one_model_call():
    embedder = HashingEmbedder()
    batcher = EmbeddingBatcher(embedder, max_wait_s=0.05, run=32)
    texts = [f"text {n}" for n in range(5)]
    vectors = await asyncio.gather(*(batcher.embed(text) for text in texts))
    assert embedder.batches == [texts]
    assert batcher.model_calls == 1
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_array_equal(vector, embedder.embed([text])[0])


async def test_a_full_batch_goes_without_waiting():
    embedder = HashingEmbedder()
    # A wait this long would time the test out if a full batch still waited for it.
    batcher = EmbeddingBatcher(embedder, max_batch=4, max_wait_s=60, run=32)
    texts = [f"text {n}" for n in range(8)]
    await asyncio.wait_for(asyncio.gather(*(batcher.embed(t) for t in texts)), timeout=5)
    assert embedder.batches == [texts[:4], texts[4:]]


async def test_requests_arriving_during_a_model_call_go_in_the_next_one():
    release = threading.Event()

    class SlowEmbedder(HashingEmbedder):
        def embed(self, texts):
            release.wait(timeout=5)
            return super().embed(texts)

    embedder = SlowEmbedder()
    batcher = EmbeddingBatcher(embedder, max_wait_s=0.001, run=32)
    first = asyncio.ensure_future(batcher.embed("first"))
    await asyncio.sleep(0.05)  # the first call is now running in its thread
    later = [asyncio.ensure_future(batcher.embed(f"later {n}")) for n in range(3)]
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.gather(first, *later)
    assert embedder.batches == [["first"], ["later 0", "later 1", "later 2"]]


async def test_model_errors_reach_every_waiter():
    class FlakyEmbedder(HashingEmbedder):
        fail = True

        def embed(self, texts):
            if self.fail:
                raise RuntimeError("model exploded")
            return super().embed(texts)

    embedder = FlakyEmbedder()
    batcher = EmbeddingBatcher(embedder)
    results = await asyncio.gather(batcher.embed("a"), batcher.embed("b"), return_exceptions=True)
    assert [str(r) for r in results] == ["model exploded", "model exploded"]
    embedder.fail = False
    assert (await batcher.embed("c")).shape == (512,)


async def test_cancelled_waiters_are_dropped_from_the_batch():
    embedder = HashingEmbedder()
    batcher = EmbeddingBatcher(embedder, max_wait_s=0.02)
    doomed = asyncio.ensure_future(batcher.embed("doomed"))
    kept = asyncio.ensure_future(batcher.embed("kept"))
    await asyncio.sleep(0)
    doomed.cancel()
    await kept
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert embedder.batches == [["kept"]]
    await batcher.aclose()


async def test_a_vector_is_kept_for_the_next_request_of_the_same_text_only():
    embedder = HashingEmbedder()
    batcher = EmbeddingBatcher(embedder, max_wait_s=0.001)
    looked_up = await batcher.embed("how do I reset my password")
    stored = await batcher.embed("how do I reset my password")
    np.testing.assert_array_equal(stored, looked_up)
    assert (batcher.model_calls, batcher.reused) == (1, 1)
    # Taken once: a third request of the text runs the model again.
    await batcher.embed("how do I reset my password")
    assert (batcher.model_calls, batcher.reused) == (2, 1)


async def test_kept_vectors_are_private_copies():
    batcher = EmbeddingBatcher(HashingEmbedder(), max_wait_s=0.001)
    given = await batcher.embed("one two")
    expected = given.copy()
    given[:] = 0  # a caller scribbling on its vector must not change what is kept
    np.testing.assert_array_equal(await batcher.embed("one two"), expected)
    assert batcher.reused == 1


async def test_kept_vectors_are_bounded_oldest_first():
    batcher = EmbeddingBatcher(HashingEmbedder(), max_wait_s=0.001, kept=2)
    for text in ("one", "two", "three"):
        await batcher.embed(text)
    await batcher.embed("two")
    assert batcher.reused == 1
    await batcher.embed("one")  # dropped when "three" arrived, so embedded again
    assert (batcher.model_calls, batcher.reused) == (4, 1)


async def test_keeping_can_be_switched_off():
    embedder = HashingEmbedder()
    batcher = EmbeddingBatcher(embedder, max_wait_s=0.001, kept=0)
    await batcher.embed("same")
    await batcher.embed("same")
    assert (batcher.model_calls, batcher.reused) == (2, 0)


async def test_a_batch_runs_in_length_sorted_runs_and_answers_in_request_order():
    embedder = HashingEmbedder()
    batcher = EmbeddingBatcher(embedder, max_wait_s=0.05, run=2)
    texts = ["a much longer text than the rest", "tiny", "mid length one", "xs", "medium text"]
    vectors = await asyncio.gather(*(batcher.embed(text) for text in texts))
    assert batcher.model_calls == 1
    assert embedder.batches == [
        ["xs", "tiny"],
        ["medium text", "mid length one"],
        ["a much longer text than the rest"],
    ]
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_array_equal(vector, HashingEmbedder().embed([text])[0])


async def test_by_default_requests_arriving_together_share_a_call_without_a_wait():
    embedder = HashingEmbedder()
    batcher = EmbeddingBatcher(embedder, run=32)
    texts = [f"text {n}" for n in range(5)]
    await asyncio.wait_for(asyncio.gather(*(batcher.embed(t) for t in texts)), timeout=5)
    assert embedder.batches == [texts]


async def test_an_embedder_that_plans_its_calls_gets_the_whole_batch():
    class Planning(HashingEmbedder):
        plans_calls = True

    embedder = Planning()
    batcher = EmbeddingBatcher(embedder, max_wait_s=0.05, run=2)
    texts = ["a much longer text than the rest", "tiny", "mid length one", "xs", "medium text"]
    vectors = await asyncio.gather(*(batcher.embed(text) for text in texts))
    assert embedder.batches == [texts]
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_array_equal(vector, HashingEmbedder().embed([text])[0])

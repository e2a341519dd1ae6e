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
    batcher = EmbeddingBatcher(embedder, max_wait_s=0.05)
    texts = [f"text {n}" for n in range(5)]
    vectors = await asyncio.gather(*(batcher.embed(text) for text in texts))
    assert embedder.batches == [texts]
    assert batcher.model_calls == 1
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_array_equal(vector, embedder.embed([text])[0])


async def test_a_full_batch_goes_without_waiting():
    embedder = HashingEmbedder()
    # A wait this long would time the test out if a full batch still waited for it.
    batcher = EmbeddingBatcher(embedder, max_batch=4, max_wait_s=60)
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
    batcher = EmbeddingBatcher(embedder, max_wait_s=0.001)
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

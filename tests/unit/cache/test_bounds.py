"""Global entry and byte bounds, max_age, and the switch to HNSW inside the cache."""

from __future__ import annotations

import pytest

from services.cache.model import ExactTarget, HitKind
from services.cache.records import ENTRY_OVERHEAD_BYTES
from shared.errors import InvalidRequest
from tests.unit.cache.fakes import FakeClock, HashingEmbedder, answer, ask, make_cache

# HashingEmbedder(dim=512) vectors take 2 KiB of float32.
VECTOR_BYTES = 512 * 4


async def test_byte_bound_evicts_least_recently_used_entries():
    # Room for about three entries with 1 KiB answers, whatever the entry count bound says.
    entry = ENTRY_OVERHEAD_BYTES + VECTOR_BYTES + 1024 + 200
    cache = await make_cache(max_entries=1000, max_bytes=3 * entry + 100)
    for number in range(5):
        await cache.store(ask(f"question number {number}"), answer("x" * 1024))
    stats = cache.stats(None)
    assert len(cache) == 3 and stats.entries == 3
    assert stats.nbytes <= 3 * entry + 100
    assert stats.counters.evictions == 2
    assert (await cache.lookup(ask("question number 0"))).kind is HitKind.MISS
    assert (await cache.lookup(ask("question number 4"))).kind is HitKind.EXACT


async def test_an_entry_larger_than_the_byte_bound_is_refused():
    cache = await make_cache(max_bytes=8192)
    with pytest.raises(InvalidRequest, match="SLUICE_CACHE_MAX_BYTES"):
        await cache.store(ask("a question"), answer("x" * 10_000))
    assert len(cache) == 0


async def test_bytes_follow_stores_and_removals_per_tenant():
    cache = await make_cache()
    await cache.store(ask("alpha one", tenant="acme"), answer("1"))
    await cache.store(ask("beta two", tenant="globex"), answer("22"))
    acme, globex, total = cache.stats("acme"), cache.stats("globex"), cache.stats(None)
    assert acme.entries == globex.entries == 1
    # The vector, texts (answer, query, keys, tenant) and the fixed overhead.
    assert acme.nbytes == ENTRY_OVERHEAD_BYTES + VECTOR_BYTES + 1 + 9 + 64 + 64 + 4 + 11
    assert globex.nbytes == acme.nbytes + 1 - 1 + 2
    assert total.nbytes == acme.nbytes + globex.nbytes


async def test_max_age_skips_older_entries_exact_and_semantic():
    clock = FakeClock()
    cache = await make_cache(min_similarity=0.8, clock=clock)
    await cache.store(ask("what is the capital of france"), answer("old"))
    clock.advance(100)
    fresh = await cache.store(ask("what is the capital of france today"), answer("new"))
    clock.advance(10)
    young = ask("what is the capital of france")
    young = type(young)(**{**young.__dict__, "max_age_s": 50.0})
    # The exact entry is 110 s old: too old; the semantic neighbour is 10 s old.
    result = await cache.lookup(young)
    assert result.kind is HitKind.SEMANTIC and result.entry_id == fresh.entry_id
    assert (await cache.lookup(type(young)(**{**young.__dict__, "max_age_s": 5.0}))).kind is (
        HitKind.MISS
    )
    # Without max_age the old exact entry still answers.
    assert (await cache.lookup(ask("what is the capital of france"))).answer == answer("old")


@pytest.mark.parametrize("max_age_s", [0.0, -1.0, float("nan")])
async def test_max_age_must_be_positive(max_age_s):
    cache = await make_cache()
    request = ask("a question")
    with pytest.raises(InvalidRequest, match="max_age"):
        await cache.lookup(type(request)(**{**request.__dict__, "max_age_s": max_age_s}))


async def test_a_growing_namespace_moves_to_hnsw_and_keeps_answering():
    embedder = HashingEmbedder(dim=64)
    cache = await make_cache(embedder=embedder, ann_threshold=40, max_entries=1000)
    stored = [
        (await cache.store(ask(f"topic {n} question {n * 7}"), answer(str(n)))).entry_id
        for n in range(60)
    ]
    await cache.settle()
    namespace = cache.namespace((await cache.lookup(ask("topic 3 question 21"))).namespace)
    assert namespace is not None and namespace.index.kind == "hnsw"
    semantic = await cache.lookup(ask("topic 5 question 35 please"))
    assert semantic.kind is HitKind.SEMANTIC and semantic.entry_id == stored[5]
    # Removed entries become tombstones and are never returned.
    cache_entry_ids = set(stored)
    assert await cache.invalidate("acme", ExactTarget(ask("topic 5 question 35"))) == 1
    after = await cache.lookup(ask("topic 5 question 35 please"))
    assert after.entry_id != stored[5]
    assert after.entry_id in cache_entry_ids | {""}

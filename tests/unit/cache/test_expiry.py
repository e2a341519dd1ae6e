"""SemanticCache TTL expiry and per-namespace LRU eviction."""

from __future__ import annotations

from services.cache.cache import HitKind
from shared.chat import Role, Turn
from tests.unit.cache.fakes import FakeClock, answer, ask, make_cache

QUESTION = "what is the capital of france"
PARAPHRASE = "what is the capital of france please"


async def test_entries_expire_after_the_default_ttl():
    clock = FakeClock()
    cache = await make_cache(ttl_s=60, clock=clock)
    await cache.store(ask(QUESTION), answer())
    clock.advance(59.9)
    assert (await cache.lookup(ask(QUESTION))).kind is HitKind.EXACT
    assert (await cache.lookup(ask(PARAPHRASE))).kind is HitKind.SEMANTIC
    clock.advance(0.1)
    assert (await cache.lookup(ask(QUESTION))).kind is HitKind.MISS
    assert (await cache.lookup(ask(PARAPHRASE))).kind is HitKind.MISS
    assert len(cache) == 0


async def test_expired_semantic_neighbour_is_skipped_for_a_live_one():
    clock = FakeClock()
    cache = await make_cache(min_similarity=0.8, ttl_s=3600, clock=clock)
    await cache.store(ask(PARAPHRASE), answer("old"), ttl_s=10)
    live = (await cache.store(ask("what is the capital of france today"), answer("new"))).entry_id
    clock.advance(11)
    # The expired entry is the nearest (an exact text match); the live one still answers.
    result = await cache.lookup(ask(QUESTION + " please"))
    assert result.kind is HitKind.SEMANTIC
    assert result.entry_id == live


async def test_per_entry_ttl_overrides_the_default():
    clock = FakeClock()
    cache = await make_cache(ttl_s=3600, clock=clock)
    await cache.store(ask(QUESTION), answer(), ttl_s=5)
    clock.advance(5)
    assert (await cache.lookup(ask(QUESTION))).kind is HitKind.MISS


async def test_least_recently_used_entry_is_evicted():
    cache = await make_cache(max_entries=2, min_similarity=0.99)
    first = (await cache.store(ask("alpha one"), answer("1"))).entry_id
    await cache.store(ask("beta two"), answer("2"))
    # Reading "alpha one" makes "beta two" the least recently used.
    assert (await cache.lookup(ask("alpha one"))).entry_id == first
    await cache.store(ask("gamma three"), answer("3"))
    assert len(cache) == 2
    assert (await cache.lookup(ask("beta two"))).kind is HitKind.MISS
    assert (await cache.lookup(ask("alpha one"))).kind is HitKind.EXACT
    assert (await cache.lookup(ask("gamma three"))).kind is HitKind.EXACT


async def test_expired_entries_are_evicted_before_live_ones():
    clock = FakeClock()
    cache = await make_cache(max_entries=2, ttl_s=3600, clock=clock)
    await cache.store(ask("alpha one"), answer("1"))
    await cache.store(ask("beta two"), answer("2"), ttl_s=1)
    clock.advance(2)
    await cache.store(ask("gamma three"), answer("3"))
    assert (await cache.lookup(ask("alpha one"))).kind is HitKind.EXACT
    assert (await cache.lookup(ask("gamma three"))).kind is HitKind.EXACT


async def test_capacity_is_global_across_namespaces_and_tenants():
    cache = await make_cache(max_entries=2)
    await cache.store(ask(QUESTION, tenant="acme"), answer())
    await cache.store(ask(QUESTION, tenant="globex"), answer())
    other_context = (Turn(Role.SYSTEM, "Be brief."),)
    await cache.store(ask(QUESTION, history=other_context), answer())
    assert len(cache) == 2
    # The least recently used entry went, although it was alone in its namespace and tenant.
    assert (await cache.lookup(ask(QUESTION, tenant="acme"))).kind is HitKind.MISS
    assert (await cache.lookup(ask(QUESTION, tenant="globex"))).kind is HitKind.EXACT
    assert cache.stats("acme").counters.evictions == 1
    assert cache.stats(None).entries == 2


async def test_many_stores_keep_the_newest_max_entries():
    clock = FakeClock()
    cache = await make_cache(max_entries=5, ttl_s=3600, clock=clock)
    for number in range(500):
        await cache.store(ask(f"question number {number}"), answer(str(number)))
        clock.advance(1)
    assert len(cache) == 5
    assert (await cache.lookup(ask("question number 499"))).answer == answer("499")

"""Invalidate by exact request, namespace, tenant and tag; Stats counters."""

from __future__ import annotations

import pytest

from services.cache.model import ExactTarget, HitKind, NamespaceTarget, TagTarget, TenantTarget
from services.cache.store import MemoryStore
from services.cache.verify import Pair, Verdict
from shared.chat import Role, Turn
from shared.errors import InvalidRequest, NotFound
from tests.unit.cache.fakes import answer, ask, make_cache

SYSTEM = (Turn(Role.SYSTEM, "Answer in French."),)


async def filled():
    store = MemoryStore()
    cache = await make_cache(store=store, min_similarity=0.8)
    first = await cache.store(ask("what is the capital of france"), answer(), tags=["geo"])
    await cache.store(ask("what is the capital of spain"), answer("Madrid."), tags=["geo", "es"])
    await cache.store(ask("what is the capital of italy", history=SYSTEM), answer("Rome."))
    await cache.store(ask("what is the capital of france", tenant="globex"), answer(), tags=["geo"])
    return cache, store, first


async def test_by_exact_request_removes_that_entry_only():
    cache, store, first = await filled()
    removed = await cache.invalidate("acme", ExactTarget(ask("what is the capital of france")))
    assert removed == 1
    assert first.entry_id not in store.records
    gone = ask("what is the capital of france", allow_semantic=False)
    assert (await cache.lookup(gone)).kind is HitKind.MISS
    assert (await cache.lookup(ask("what is the capital of spain"))).kind is HitKind.EXACT
    assert (
        await cache.lookup(ask("what is the capital of france", tenant="globex"))
    ).kind is HitKind.EXACT
    # Nothing stored for that request (any more): nothing removed, no error.
    assert await cache.invalidate("acme", ExactTarget(ask("what is the capital of france"))) == 0


async def test_by_namespace_key_removes_the_whole_namespace():
    cache, store, first = await filled()
    assert await cache.invalidate("acme", NamespaceTarget(first.namespace)) == 2
    assert len(cache) == 2 and len(store.records) == 2
    assert (await cache.lookup(ask("what is the capital of spain"))).kind is HitKind.MISS
    italy = ask("what is the capital of italy", history=SYSTEM)
    assert (await cache.lookup(italy)).kind is HitKind.EXACT


async def test_unknown_or_foreign_namespace_is_not_found():
    cache, _, first = await filled()
    with pytest.raises(NotFound, match="namespace"):
        await cache.invalidate("acme", NamespaceTarget("0" * 64))
    # globex cannot remove (or learn about) acme's namespace.
    with pytest.raises(NotFound, match="globex"):
        await cache.invalidate("globex", NamespaceTarget(first.namespace))
    assert len(cache) == 4
    with pytest.raises(InvalidRequest, match="64 hex digits"):
        await cache.invalidate("acme", NamespaceTarget("not-a-key"))


async def test_tenant_wide_removes_every_entry_of_the_tenant_only():
    cache, store, _ = await filled()
    assert await cache.invalidate("acme", TenantTarget()) == 3
    assert len(cache) == 1 and len(store.records) == 1
    assert cache.stats("acme").entries == 0
    assert cache.stats("acme").counters.invalidations == 3
    with pytest.raises(NotFound, match="'acme' has no cache entries"):
        await cache.invalidate("acme", TenantTarget())


async def test_by_tag_within_the_tenant():
    cache, _, _ = await filled()
    assert await cache.invalidate("acme", TagTarget("es")) == 1
    assert await cache.invalidate("acme", TagTarget("geo")) == 1
    assert await cache.invalidate("acme", TagTarget("geo")) == 0
    assert len(cache) == 2  # acme's untagged entry and globex's tagged one
    with pytest.raises(InvalidRequest, match="tag"):
        await cache.invalidate("acme", TagTarget("  "))


async def test_tags_are_validated_on_store():
    cache = await make_cache()
    with pytest.raises(InvalidRequest, match=r"tags\[1\]"):
        await cache.store(ask("q one"), answer(), tags=["ok", ""])
    with pytest.raises(InvalidRequest, match="at most 16"):
        await cache.store(ask("q one"), answer(), tags=[f"t{n}" for n in range(17)])
    with pytest.raises(InvalidRequest, match="tenant_id"):
        await cache.invalidate("", TenantTarget())


async def test_stats_count_hits_misses_and_rejects_per_tenant():
    class RejectFrance:
        def verify(self, pair: Pair) -> Verdict:
            return Verdict("france" not in pair.candidate, "entity")

    cache = await make_cache(min_similarity=0.8)
    cache._verifier = RejectFrance()  # the verifier is a constructor argument; swapped here
    await cache.store(ask("what is the capital of france"), answer())
    await cache.lookup(ask("what is the capital of france"))  # exact: no verification
    await cache.lookup(ask("what is the capital of france please"))  # rejected -> miss
    await cache.lookup(ask("something else entirely"))
    await cache.lookup(ask("what is the capital of france", tenant="globex"))
    acme = cache.stats("acme").counters
    assert (acme.exact_hits, acme.semantic_hits, acme.misses) == (1, 0, 2)
    assert acme.verification_rejects == 1
    total = cache.stats(None)
    assert total.counters.misses == 3 and total.tenant_id is None
    assert cache.stats("nobody").entries == 0

"""SemanticCache lookups: exact, semantic, thresholds, multi-turn context and tenants."""

from __future__ import annotations

import dataclasses

import pytest

from services.cache.cache import HitKind
from shared.chat import Role, Sampling, Turn
from shared.errors import InvalidRequest, NotReady
from tests.unit.cache.fakes import FakeClock, HashingEmbedder, answer, ask, make_cache

QUESTION = "what is the capital of france"
# Shares 6 of 7 words with QUESTION: cosine 6 / sqrt(6 * 7) = 0.926 under HashingEmbedder.
PARAPHRASE = "what is the capital of france please"
# Shares 5 of 6 words: cosine 5 / 6 = 0.833.
OTHER = "what is the capital of germany"


async def test_exact_hit_returns_the_stored_answer():
    cache = await make_cache()
    entry_id = (await cache.store(ask(QUESTION), answer("Paris."))).entry_id
    result = await cache.lookup(ask(QUESTION))
    assert result.kind is HitKind.EXACT
    assert result.hit
    assert result.similarity == 1.0
    assert result.entry_id == entry_id
    assert result.answer == answer("Paris.")


async def test_empty_cache_misses():
    result = await (await make_cache()).lookup(ask(QUESTION))
    assert result.kind is HitKind.MISS
    assert not result.hit
    assert result.answer is None


async def test_semantic_hit_above_threshold():
    cache = await make_cache(min_similarity=0.9)
    entry_id = (await cache.store(ask(QUESTION), answer())).entry_id
    result = await cache.lookup(ask(PARAPHRASE))
    assert result.kind is HitKind.SEMANTIC
    assert result.entry_id == entry_id
    assert result.similarity == pytest.approx(6 / (6 * 7) ** 0.5, abs=1e-5)


async def test_semantic_miss_below_threshold():
    cache = await make_cache(min_similarity=0.9)
    await cache.store(ask(QUESTION), answer())
    result = await cache.lookup(ask(OTHER))
    assert result.kind is HitKind.MISS


async def test_threshold_is_inclusive():
    cache = await make_cache(min_similarity=5 / 6 - 1e-6)
    await cache.store(ask(QUESTION), answer())
    assert (await cache.lookup(ask(OTHER))).kind is HitKind.SEMANTIC


async def test_best_match_wins():
    cache = await make_cache(min_similarity=0.5)
    await cache.store(ask(OTHER), answer("Berlin."))
    paris = (await cache.store(ask(QUESTION), answer("Paris."))).entry_id
    result = await cache.lookup(ask(PARAPHRASE))
    assert result.entry_id == paris


async def test_allow_semantic_false_limits_to_exact():
    embedder = HashingEmbedder()
    cache = await make_cache(embedder=embedder)
    await cache.store(ask(QUESTION), answer())
    calls = len(embedder.batches)
    result = await cache.lookup(ask(PARAPHRASE, allow_semantic=False))
    assert result.kind is HitKind.MISS
    assert len(embedder.batches) == calls, "an exact-only lookup must not embed"


async def test_lookup_in_an_unknown_namespace_skips_the_embedding():
    embedder = HashingEmbedder()
    cache = await make_cache(embedder=embedder)
    await cache.lookup(ask(QUESTION))
    assert embedder.batches == []


async def test_earlier_turns_must_match_exactly():
    history = (Turn(Role.SYSTEM, "Answer in French."), Turn(Role.USER, "Hi"))
    cache = await make_cache(min_similarity=0.9)
    await cache.store(ask(QUESTION, history=history), answer("Paris."))
    assert (await cache.lookup(ask(PARAPHRASE, history=history))).kind is HitKind.SEMANTIC
    changed = (Turn(Role.SYSTEM, "Answer in German."), Turn(Role.USER, "Hi"))
    assert (await cache.lookup(ask(QUESTION, history=changed))).kind is HitKind.MISS
    assert (await cache.lookup(ask(QUESTION))).kind is HitKind.MISS


async def test_sampling_and_model_class_separate_entries():
    cache = await make_cache()
    await cache.store(ask(QUESTION, sampling=Sampling(temperature=0.0)), answer())
    assert (await cache.lookup(ask(QUESTION, sampling=Sampling(temperature=1.0)))).kind is (
        HitKind.MISS
    )
    assert (await cache.lookup(ask(QUESTION, model_class="large"))).kind is HitKind.MISS


async def test_tenants_are_isolated():
    cache = await make_cache(min_similarity=0.0)
    await cache.store(ask(QUESTION, tenant="acme"), answer("acme's answer"))
    assert (await cache.lookup(ask(QUESTION, tenant="globex"))).kind is HitKind.MISS
    assert (await cache.lookup(ask(PARAPHRASE, tenant="globex"))).kind is HitKind.MISS
    assert (await cache.lookup(ask(QUESTION, tenant="acme"))).kind is HitKind.EXACT


async def test_restoring_the_same_request_replaces_the_entry():
    cache = await make_cache()
    first = (await cache.store(ask(QUESTION), answer("Paris?"))).entry_id
    second = (await cache.store(ask(QUESTION), answer("Paris."))).entry_id
    assert first != second
    assert len(cache) == 1
    result = await cache.lookup(ask(PARAPHRASE))
    assert result.entry_id == second
    assert result.answer == answer("Paris.")


async def test_request_without_user_turn_is_cached_by_exact_key_only():
    cache = await make_cache(min_similarity=0.0)
    system_only = dataclasses.replace(ask(QUESTION), turns=(Turn(Role.SYSTEM, "Say hi."),))
    entry_id = (await cache.store(system_only, answer("hi"))).entry_id
    assert (await cache.lookup(system_only)).entry_id == entry_id


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (dataclasses.replace(ask(QUESTION), tenant_id=""), "tenant_id"),
        (dataclasses.replace(ask(QUESTION), turns=()), "messages"),
    ],
)
async def test_invalid_requests_name_the_field(request_, field):
    cache = await make_cache()
    with pytest.raises(InvalidRequest, match=field):
        await cache.lookup(request_)
    with pytest.raises(InvalidRequest, match=field):
        await cache.store(request_, answer())


async def test_store_rejects_empty_answers_and_bad_ttls():
    cache = await make_cache()
    with pytest.raises(InvalidRequest, match="content"):
        await cache.store(ask(QUESTION), answer(""))
    with pytest.raises(InvalidRequest, match="ttl"):
        await cache.store(ask(QUESTION), answer(), ttl_s=0)


async def test_not_ready_until_the_model_is_loaded():
    embedder = HashingEmbedder(loaded=False)
    cache = await make_cache(embedder=embedder, clock=FakeClock())
    assert not cache.ready
    with pytest.raises(NotReady):
        await cache.lookup(ask(QUESTION))
    with pytest.raises(NotReady):
        await cache.store(ask(QUESTION), answer())
    embedder.load()
    assert cache.ready
    await cache.store(ask(QUESTION), answer())

"""The request path: cache, compression, cascade, store, and degradation of optional stages."""

import asyncio
import time
from dataclasses import replace

import pytest
from opentelemetry.sdk.trace import TracerProvider

from services.router.admission import Admission, Asked
from services.router.budgets import InMemoryLedger
from services.router.cache_audit import CacheAudit
from services.router.cache_stage import CacheStage
from services.router.cascade import Cascade
from services.router.model import (
    CachedAnswer,
    CacheLookup,
    CacheMode,
    Compression,
    Outcome,
    StageName,
)
from services.router.pipeline import Pipeline, complete
from services.router.stores import BackgroundStores
from shared.chat import Finish, Role, Sampling, Turn
from shared.errors import Unavailable
from shared.pricing import TokenUsage
from shared.tokens import TokenCounter
from tests.unit.router.fakes import FakeCache, FakeCompressor, FakeModels, answer
from tests.unit.router.fixtures import admit_acme, catalogue, policy, policy_doc

TRACER = TracerProvider().get_tracer("test")


def build(models, cache=None, compressor=None, ledger=None, stores=None):
    cache = cache or FakeCache()
    cascade = Cascade(models, TRACER)
    stage = (
        None if stores is None else CacheStage(cache, CacheAudit(cache, cascade, TRACER), stores)
    )
    pipeline = Pipeline(
        cache,
        compressor or FakeCompressor(),
        cascade,
        catalogue(),
        TokenCounter(),
        ledger,
        cache_stage=stage,
    )
    return pipeline, cache


async def ask(pipeline, cache_mode=None, text="What is the capital of France?"):
    chat = Admission(policy(), TokenCounter(), 10_000).admit(
        "acme-key",
        Asked(
            request_id="r1",
            model_class="",
            turns=(Turn(Role.USER, text),),
            sampling=Sampling(),
            cache_mode=cache_mode,
            max_cost_nano_usd=0,
        ),
    )
    result = await complete(pipeline, chat, time.monotonic() + 5)
    # Stores run in the background; wait for them so that assertions on what was stored hold.
    await pipeline.drain()
    return result


def line(result, stage):
    return next(x for x in result.lines if x.stage is stage)


async def test_miss_runs_the_cascade_stores_and_prices_the_baseline() -> None:
    pipeline, cache = build(FakeModels({"cheap": answer("Paris.", "cheap", cost=50)}))
    result = await ask(pipeline)
    assert result.content == "Paris." and result.tier == 1 and not result.cache_hit
    assert line(result, StageName.CACHE).outcome is Outcome.PASSED
    assert cache.stored and cache.stored[0].content == "Paris."
    assert result.total_cost_nano_usd == 50
    # Baseline "top": $10/M input on the counted prompt, $30/M on the answer's 5 output tokens.
    prompt_tokens = TokenCounter().count_chat(["What is the capital of France?"])
    assert result.baseline_cost_nano_usd == prompt_tokens * 10_000 + 5 * 30_000
    assert result.cost_avoided_nano_usd == result.baseline_cost_nano_usd - 50


async def test_cache_hit_skips_the_cascade() -> None:
    hit = CachedAnswer("semantic", "Paris.", "mid", TokenUsage(10, 5), 0.93, Finish.STOP)
    models = FakeModels({})
    pipeline, _ = build(models, FakeCache(hit=hit))
    result = await ask(pipeline)
    assert result.cache_hit and result.tier == 0 and models.calls == []
    assert result.total_cost_nano_usd == 0
    assert result.cost_avoided_nano_usd == result.baseline_cost_nano_usd > 0
    assert "similarity 0.930" in line(result, StageName.CACHE).detail


async def test_dead_cache_and_compressor_are_skipped_not_fatal() -> None:
    pipeline, _ = build(
        FakeModels({"cheap": answer("Paris.", "cheap")}),
        FakeCache(down=True),
        FakeCompressor(down=True),
    )
    result = await ask(pipeline)
    assert result.content == "Paris."
    assert line(result, StageName.CACHE).outcome is Outcome.SKIPPED
    assert line(result, StageName.COMPRESSOR).outcome is Outcome.SKIPPED
    assert "connection refused" in line(result, StageName.CACHE).detail


async def test_compressed_prompt_is_what_the_tier_sees() -> None:
    short = (Turn(Role.USER, "short"),)
    models = FakeModels({"cheap": answer("Paris.", "cheap")})
    pipeline, _ = build(
        models, compressor=FakeCompressor(Compression(short, True, 900, 300, "extractive", "ok", 0))
    )
    result = await ask(pipeline)
    assert models.seen_turns == [short]
    assert line(result, StageName.COMPRESSOR).outcome is Outcome.USED
    assert "900 -> 300" in line(result, StageName.COMPRESSOR).detail


async def test_bypass_neither_looks_up_nor_stores() -> None:
    hit = CachedAnswer("exact", "stale", "mid", TokenUsage(1, 1), 1.0, Finish.STOP)
    pipeline, cache = build(FakeModels({"cheap": answer("fresh", "cheap")}), FakeCache(hit=hit))
    result = await ask(pipeline, cache_mode=CacheMode.BYPASS)
    assert result.content == "fresh" and cache.stored == []
    assert line(result, StageName.CACHE).outcome is Outcome.NOT_APPLICABLE


async def test_truncated_last_resort_answers_are_not_cached() -> None:
    cut = answer("cut", "top", Finish.LENGTH)
    pipeline, cache = build(FakeModels({"cheap": cut, "mid": cut, "top": cut}))
    result = await ask(pipeline)
    assert result.finish is Finish.LENGTH and cache.stored == []


async def test_sampled_requests_skip_the_cache_unless_the_policy_allows() -> None:
    hit = CachedAnswer("exact", "cached", "mid", TokenUsage(1, 1), 1.0, Finish.STOP)
    pipeline, cache = build(FakeModels({"cheap": answer("fresh", "cheap")}), FakeCache(hit=hit))
    chat = Admission(policy(), TokenCounter(), 10_000).admit(
        "acme-key",
        Asked(
            request_id="r1",
            model_class="",
            turns=(Turn(Role.USER, "a poem"),),
            sampling=Sampling(temperature=0.8),
            cache_mode=None,
            max_cost_nano_usd=0,
        ),
    )
    result = await complete(pipeline, chat, time.monotonic() + 5)
    await pipeline.drain()
    assert result.content == "fresh" and cache.stored == []
    assert "temperature > 0" in line(result, StageName.CACHE).detail
    allowed = replace(chat, tenant=replace(chat.tenant, cache_sampled=True))
    assert (await complete(pipeline, allowed, time.monotonic() + 5)).content == "cached"


async def test_unset_temperature_takes_the_model_class_default() -> None:
    chat = admit_acme(policy_doc(), "q")
    assert chat.sampling.temperature == 0.0


class GatedCache(FakeCache):
    """A cache whose Store blocks until released, like one busy embedding and writing."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def store(self, request, answer, deadline):
        await self.release.wait()
        await super().store(request, answer, deadline)


async def test_the_answer_returns_before_the_cache_store_finishes() -> None:
    cache = GatedCache()
    pipeline, _ = build(FakeModels({"cheap": answer("Paris.", "cheap")}), cache)
    chat = Admission(policy(), TokenCounter(), 10_000).admit(
        "acme-key",
        Asked(
            request_id="r1",
            model_class="",
            turns=(Turn(Role.USER, "What is the capital of France?"),),
            sampling=Sampling(),
            cache_mode=None,
            max_cost_nano_usd=0,
        ),
    )
    result = await asyncio.wait_for(complete(pipeline, chat, time.monotonic() + 5), timeout=2)
    assert result.content == "Paris." and cache.stored == []
    assert pipeline.cache.stores.pending == 1
    cache.release.set()
    await pipeline.drain()
    assert [a.content for a in cache.stored] == ["Paris."]
    assert (pipeline.cache.stores.stored, pipeline.cache.stores.pending) == (1, 0)


class RememberingCache(GatedCache):
    """Serves an exact hit for what it has stored."""

    async def lookup(self, request, deadline):
        if self.stored:
            answer = self.stored[-1]
            return CacheLookup(
                CachedAnswer(
                    "exact", answer.content, answer.model, answer.usage, 1.0, answer.finish
                )
            )
        return CacheLookup()


async def test_a_repeat_waits_for_the_pending_store_of_the_same_request() -> None:
    cache = RememberingCache()
    models = FakeModels({"cheap": answer("Paris.", "cheap")})
    pipeline, _ = build(models, cache)
    first = await asyncio.wait_for(ask_unwaited(pipeline), timeout=2)
    repeat = asyncio.ensure_future(ask_unwaited(pipeline))
    await asyncio.sleep(0.05)
    assert not repeat.done()  # its store is still running, so the repeat waits for it
    cache.release.set()
    second = await asyncio.wait_for(repeat, timeout=2)
    assert not first.cache_hit and second.cache_hit and second.content == "Paris."
    await pipeline.drain()


async def test_requests_in_another_namespace_do_not_wait_for_pending_stores() -> None:
    cache = RememberingCache()
    pipeline, _ = build(
        FakeModels({"cheap": answer("Paris.", "cheap")}),
        cache,
        stores=BackgroundStores(visibility_s=30),
    )
    await asyncio.wait_for(ask_unwaited(pipeline), timeout=2)
    # A system prompt puts it in another namespace: no answer stored there can serve it.
    other = await asyncio.wait_for(ask_unwaited(pipeline, system="Be brief."), timeout=2)
    assert not other.cache_hit and pipeline.cache.stores.pending == 2
    cache.release.set()
    await pipeline.drain()
    assert len(cache.stored) == 2


async def test_unrelated_questions_do_not_wait_for_pending_stores() -> None:
    cache = RememberingCache()
    pipeline, _ = build(
        FakeModels({"cheap": answer("Paris.", "cheap")}),
        cache,
        stores=BackgroundStores(visibility_s=30),
    )
    await asyncio.wait_for(ask_unwaited(pipeline), timeout=2)
    # Same namespace, but no content word in common: no stored answer could serve it.
    other = await asyncio.wait_for(ask_unwaited(pipeline, text="Who wrote Hamlet?"), timeout=2)
    assert not other.cache_hit and pipeline.cache.stores.pending == 2
    cache.release.set()
    await pipeline.drain()


async def test_the_wait_for_pending_stores_is_bounded() -> None:
    cache = RememberingCache()
    pipeline, _ = build(
        FakeModels({"cheap": answer("Paris.", "cheap")}),
        cache,
        stores=BackgroundStores(visibility_s=0.05),
    )
    await asyncio.wait_for(ask_unwaited(pipeline), timeout=2)
    # Same namespace, but the store is stuck: the lookup goes ahead after visibility_s.
    paraphrase = ask_unwaited(pipeline, text="What's the capital city of France?")
    other = await asyncio.wait_for(paraphrase, timeout=2)
    assert not other.cache_hit
    cache.release.set()
    await pipeline.drain()


async def ask_unwaited(pipeline, text="What is the capital of France?", system=""):
    turns = ((Turn(Role.SYSTEM, system),) if system else ()) + (Turn(Role.USER, text),)
    chat = Admission(policy(), TokenCounter(), 10_000).admit(
        "acme-key",
        Asked(
            request_id="r1",
            model_class="",
            turns=turns,
            sampling=Sampling(),
            cache_mode=None,
            max_cost_nano_usd=0,
        ),
    )
    return await complete(pipeline, chat, time.monotonic() + 5)


async def test_a_request_no_tier_answers_still_bills_the_timed_out_prompts() -> None:
    models = FakeModels({m: answer("slow", m) for m in ("cheap", "mid", "top")})
    models.delays.update({"cheap": 5.0, "mid": 5.0, "top": 5.0})
    ledger = InMemoryLedger()
    pipeline = Pipeline(
        FakeCache(),
        FakeCompressor(),
        Cascade(models, TRACER, prompt_cost=lambda model, turns: 40),
        catalogue(),
        TokenCounter(),
        ledger,
    )
    chat = admit_acme(policy_doc(), "What is the capital of France?")
    tiers = tuple(replace(t, latency_budget_s=0.02) for t in chat.model_class.tiers)
    chat = replace(chat, model_class=replace(chat.model_class, tiers=tiers))
    with pytest.raises(Unavailable, match="no tier could be reached"):
        await complete(pipeline, chat, time.monotonic() + 10)
    assert ledger.spent("acme").today_nano_usd == 3 * 40

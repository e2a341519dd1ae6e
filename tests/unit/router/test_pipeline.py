"""The request path: cache, compression, cascade, store, and degradation of optional stages."""

import time
from dataclasses import replace

from opentelemetry.sdk.trace import TracerProvider

from services.router.admission import Admission
from services.router.cascade import Cascade
from services.router.model import CachedAnswer, CacheMode, Compression, Outcome, StageName
from services.router.pipeline import Pipeline, complete
from shared.chat import Finish, Role, Sampling, Turn
from shared.pricing import TokenUsage
from shared.tokens import TokenCounter
from tests.unit.router.fakes import FakeCache, FakeCompressor, FakeModels, answer
from tests.unit.router.fixtures import catalogue, policy

TRACER = TracerProvider().get_tracer("test")


def build(models, cache=None, compressor=None, ledger=None):
    cache = cache or FakeCache()
    pipeline = Pipeline(
        cache,
        compressor or FakeCompressor(),
        Cascade(models, TRACER),
        catalogue(),
        TokenCounter(),
        ledger,
    )
    return pipeline, cache


async def ask(pipeline, cache_mode=None, text="What is the capital of France?"):
    chat = Admission(policy(), TokenCounter(), 10_000).admit(
        "acme-key",
        request_id="r1",
        model_class="",
        turns=(Turn(Role.USER, text),),
        sampling=Sampling(),
        cache_mode=cache_mode,
        max_cost_nano_usd=0,
    )
    return await complete(pipeline, chat, time.monotonic() + 5)


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
        request_id="r1",
        model_class="",
        turns=(Turn(Role.USER, "a poem"),),
        sampling=Sampling(temperature=0.8),
        cache_mode=None,
        max_cost_nano_usd=0,
    )
    result = await complete(pipeline, chat, time.monotonic() + 5)
    assert result.content == "fresh" and cache.stored == []
    assert "temperature > 0" in line(result, StageName.CACHE).detail
    allowed = replace(chat, tenant=replace(chat.tenant, cache_sampled=True))
    assert (await complete(pipeline, allowed, time.monotonic() + 5)).content == "cached"


async def test_unset_temperature_takes_the_model_class_default() -> None:
    chat = Admission(policy(), TokenCounter(), 10_000).admit(
        "acme-key",
        request_id="r1",
        model_class="",
        turns=(Turn(Role.USER, "q"),),
        sampling=Sampling(),
        cache_mode=None,
        max_cost_nano_usd=0,
    )
    assert chat.sampling.temperature == 0.0

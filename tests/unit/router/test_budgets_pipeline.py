"""Budgets through the pipeline: a tiny daily budget ends within one request's estimate even
under concurrent requests, and every path (answer, no tier, error, cancellation, cache hit)
settles its reservation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import cast

import pytest

from services.router.budgets import InMemoryLedger
from services.router.cascade import Cascade
from services.router.model import CachedAnswer, ChatRequest, RouteResult, TierDelta
from services.router.pipeline import Pipeline, complete
from services.router.policy import parse_policy
from services.router.spending import Spending
from shared.chat import Finish, Sampling
from shared.errors import BudgetExhausted, Unavailable
from shared.pricing import TokenUsage
from shared.tokens import TokenCounter
from tests.unit.router.fakes import FakeCache, FakeCompressor, FakeModels, answer
from tests.unit.router.fixtures import catalogue
from tests.unit.router.test_budgets import Clock, admit
from tests.unit.router.test_budgets_reservations import budgeted
from tests.unit.router.test_cascade import TRACER

# The tenant: a daily budget of $0.00005.
TINY_DAILY_NANO = 50_000
CHEAP_ANSWER_NANO = 14_300


def build(models: FakeModels, ledger: InMemoryLedger, cache: FakeCache | None = None) -> Pipeline:
    return Pipeline(
        cache or FakeCache(),
        FakeCompressor(),
        Cascade(models, TRACER),
        catalogue(),
        TokenCounter(),
        ledger,
    )


def tiny_request(ledger: InMemoryLedger) -> ChatRequest:
    # max_tokens 1 keeps one request's worst case small, so the bound below is a tight one.
    return admit(
        parse_policy(budgeted(daily_nano=TINY_DAILY_NANO), catalogue()),
        ledger,
        sampling=Sampling(max_tokens=1),
    )


async def test_a_tiny_daily_budget_ends_within_one_estimate_under_concurrent_requests() -> None:
    ledger = InMemoryLedger(Clock())
    models = FakeModels({"cheap": answer("Paris.", "cheap", cost=CHEAP_ANSWER_NANO)})
    models.delays["cheap"] = 0.01
    pipeline = build(models, ledger)
    estimate = Spending(None, catalogue()).estimate(tiny_request(ledger))
    deadline = time.monotonic() + 60

    async def ask() -> RouteResult:
        # Admission's cheap check on the local view, then the pipeline's reservation.
        return await complete(pipeline, tiny_request(ledger), deadline)

    answered = 0
    # Waves of 20 requests started together, until the budget turns every one away.
    while True:
        waves = await asyncio.gather(*(ask() for _ in range(20)), return_exceptions=True)
        assert all(isinstance(r, RouteResult | BudgetExhausted) for r in waves), waves
        served = sum(isinstance(r, RouteResult) for r in waves)
        answered += served
        if not served:
            break
    spent = ledger.spent("acme").today_nano_usd
    assert spent == answered * CHEAP_ANSWER_NANO
    assert TINY_DAILY_NANO <= spent <= TINY_DAILY_NANO + estimate
    assert ledger.reserved("acme") == 0
    message = str(waves[0])
    assert "daily budget of $0.00005 is exhausted ($0.0000572 spent today)" in message


async def test_an_answer_settles_its_cost_and_releases_the_rest() -> None:
    ledger = InMemoryLedger(Clock())
    models = FakeModels({"cheap": answer("Paris.", "cheap", cost=40)})
    result = await complete(build(models, ledger), tiny_request(ledger), time.monotonic() + 10)
    assert result.total_cost_nano_usd == 40
    assert ledger.spent("acme").today_nano_usd == 40 and ledger.reserved("acme") == 0


async def test_no_tier_answering_settles_the_timed_out_prompts() -> None:
    ledger = InMemoryLedger(Clock())
    models = FakeModels({m: answer("slow", m) for m in ("cheap", "mid", "top")})
    models.delays.update({"cheap": 5.0, "mid": 5.0, "top": 5.0})
    pipeline = Pipeline(
        FakeCache(),
        FakeCompressor(),
        Cascade(models, TRACER, prompt_cost=lambda model, turns: 40),
        catalogue(),
        TokenCounter(),
        ledger,
    )
    chat = tiny_request(ledger)
    tiers = tuple(replace(t, latency_budget_s=0.02) for t in chat.model_class.tiers)
    chat = replace(chat, model_class=replace(chat.model_class, tiers=tiers))
    with pytest.raises(Unavailable, match="no tier could be reached"):
        await complete(pipeline, chat, time.monotonic() + 10)
    assert ledger.spent("acme").today_nano_usd == 3 * 40 and ledger.reserved("acme") == 0


async def test_an_unexpected_error_releases_the_reservation() -> None:
    ledger = InMemoryLedger(Clock())
    models = FakeModels({"cheap": RuntimeError("a bug")})
    with pytest.raises(RuntimeError):
        await complete(build(models, ledger), tiny_request(ledger), time.monotonic() + 10)
    assert ledger.reserved("acme") == 0


async def test_a_stream_cut_short_bills_the_prompt_in_flight_and_releases_the_rest() -> None:
    ledger = InMemoryLedger(Clock())
    models = FakeModels({"cheap": answer("one two three", "cheap", cost=40)})
    pipeline = build(models, ledger)
    chat = tiny_request(ledger)
    events = cast(
        AsyncGenerator[TierDelta | RouteResult],
        pipeline.run(chat, time.monotonic() + 10, stream=True),
    )
    first = await anext(events)
    assert isinstance(first, TierDelta) and ledger.reserved("acme") > 0
    await events.aclose()  # the caller went away
    assert ledger.reserved("acme") == 0
    prompt = Spending(None, catalogue()).prompt_cost(chat, 1)
    assert ledger.spent("acme").today_nano_usd == prompt > 0


async def test_a_cancelled_request_releases_the_reservation() -> None:
    ledger = InMemoryLedger(Clock())
    models = FakeModels({"cheap": answer("Paris.", "cheap", cost=40)})
    models.delays["cheap"] = 30.0
    task = asyncio.create_task(
        complete(build(models, ledger), tiny_request(ledger), time.monotonic() + 60)
    )
    deadline = time.monotonic() + 30
    while not models.calls:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert ledger.reserved("acme") > 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ledger.reserved("acme") == 0
    assert ledger.spent("acme").today_nano_usd > 0, "the prompt in flight is billed"


async def test_a_cache_hit_reserves_and_costs_nothing() -> None:
    ledger = InMemoryLedger(Clock())
    hit = CachedAnswer("exact", "Paris.", "mid", TokenUsage(10, 2), 1.0, Finish.STOP, "e-1")
    models = FakeModels({})
    result = await complete(
        build(models, ledger, FakeCache(hit=hit)), tiny_request(ledger), time.monotonic() + 10
    )
    assert result.cache_hit and models.calls == []
    assert ledger.spent("acme").today_nano_usd == 0 and ledger.reserved("acme") == 0

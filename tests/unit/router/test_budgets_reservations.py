"""Spending reserves a request's worst case before the call and settles its cost after, so
requests in flight cannot all pass a check that only some of them fit."""

from __future__ import annotations

import asyncio
import copy
import random
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from services.router.budgets import InMemoryLedger, format_usd
from services.router.model import ChatRequest
from services.router.policy import parse_policy
from services.router.spending import Reservation, Spending
from shared.chat import Sampling
from shared.errors import BudgetExhausted
from shared.pricing import TokenUsage, parse_catalogue
from tests.unit.router.fixtures import CATALOGUE_DOC, catalogue, policy_doc
from tests.unit.router.test_budgets import Clock, admit


def usd(nano: int) -> str:
    return str(Decimal(nano) / 1_000_000_000)


def budgeted(daily_nano: int = 0, on_exhausted: str = "reject", **chat_class: object) -> dict:
    doc = copy.deepcopy(policy_doc())
    acme = doc["tenants"]["acme"]
    acme["model_classes"]["chat"].update(chat_class)
    if daily_nano:
        acme["budget"] = {"daily_usd": usd(daily_nano), "on_exhausted": on_exhausted}
    return doc


def chat(doc: dict, ledger: InMemoryLedger | None = None, **overrides: object) -> ChatRequest:
    return admit(parse_policy(doc, catalogue()), ledger, **overrides)


def price(model: str, prompt: int, output: int) -> int:
    return catalogue().cost_nano_usd(model, TokenUsage(prompt, output))


def test_the_estimate_is_every_tier_at_its_output_cap_plus_a_summary() -> None:
    request = chat(budgeted())
    prompt, output = request.prompt_tokens, request.model_class.max_tokens
    tiers = sum(price(model, prompt, output) for model in ("cheap", "mid", "top"))
    summary = price("cheap", prompt, prompt)
    assert Spending(None, catalogue()).estimate(request) == tiers + summary


def test_the_estimate_follows_max_tokens_the_cost_cap_and_compression() -> None:
    spending = Spending(None, catalogue())
    base = chat(budgeted(compression={"strategy": "off"}))
    prompt = base.prompt_tokens
    short = replace(base, sampling=Sampling(max_tokens=1))
    assert spending.estimate(short) == sum(price(m, prompt, 1) for m in ("cheap", "mid", "top"))
    # A cap that the cheap tier's worst case reaches: the cascade enters no further tier.
    capped = replace(short, max_cost_nano_usd=price("cheap", prompt, 1))
    assert spending.estimate(capped) == price("cheap", prompt, 1)


def test_the_estimate_counts_the_judge_and_the_dearest_region() -> None:
    doc = budgeted(judge_model="cheap")
    doc["tenants"]["acme"]["model_classes"]["chat"]["tiers"][0]["gates"].append("judge")
    judged, plain = chat(doc), chat(budgeted())
    with_judge = Spending(None, catalogue()).estimate(judged)
    without = Spending(None, catalogue()).estimate(plain)
    output = judged.model_class.max_tokens
    assert with_judge - without == price("cheap", judged.prompt_tokens + output + 64, 4)
    prices: dict[str, Any] = copy.deepcopy(CATALOGUE_DOC)
    prices["models"]["top"]["regions"] = {"eu-west": {"input": 20.0, "output": 60.0}}
    assert Spending(None, parse_catalogue(prices)).estimate(plain) > without


async def test_requests_started_together_are_admitted_exactly_as_far_as_the_budget_fits() -> None:
    estimate = Spending(None, catalogue()).estimate(chat(budgeted()))
    doc = budgeted(daily_nano=3 * estimate + estimate // 2)
    ledger = InMemoryLedger(Clock())
    spending = Spending(ledger, catalogue())
    request = chat(doc, ledger)

    results = await asyncio.gather(
        *(spending.reserve(request) for _ in range(10)), return_exceptions=True
    )

    admitted = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, BudgetExhausted)]
    assert (len(admitted), len(refused)) == (3, 7)
    assert ledger.reserved("acme") == 3 * estimate
    assert f"may cost up to {format_usd(estimate)}" in str(refused[0])
    # Settling records the cost and releases the rest: a fourth request now fits.
    await spending.settle(admitted[0], estimate // 10)
    assert ledger.reserved("acme") == 2 * estimate
    assert ledger.spent("acme").today_nano_usd == estimate // 10
    fourth = await spending.reserve(request)
    await spending.settle(fourth, 0)
    await spending.settle(fourth, 999)  # a second settle changes nothing
    assert ledger.spent("acme").today_nano_usd == estimate // 10


async def test_a_budget_smaller_than_one_estimate_serves_one_request_at_a_time() -> None:
    ledger = InMemoryLedger(Clock())
    spending = Spending(ledger, catalogue())
    request = chat(budgeted(daily_nano=50_000), ledger)
    first = await spending.reserve(request)
    with pytest.raises(BudgetExhausted, match=r"\$0\.00005 has \$0\.00 left .* held by requests"):
        await spending.reserve(request)
    await spending.settle(first, 30_000)
    second = await spending.reserve(request)
    await spending.settle(second, 30_000)
    with pytest.raises(
        BudgetExhausted, match=r"daily budget of \$0\.00005 is exhausted \(\$0\.00006 spent today\)"
    ):
        await spending.reserve(request)


@pytest.mark.parametrize("seed", range(5))
async def test_concurrent_spend_ends_at_most_one_estimate_over_the_budget(seed: int) -> None:
    rng = random.Random(seed)
    estimate = Spending(None, catalogue()).estimate(chat(budgeted()))
    budget = rng.randint(estimate // 3, 6 * estimate)
    ledger = InMemoryLedger(Clock())
    spending = Spending(ledger, catalogue())
    request = chat(budgeted(daily_nano=budget), ledger)

    async def client() -> None:
        while True:
            try:
                reservation = await spending.reserve(request)
            except BudgetExhausted as error:
                if "is exhausted" in str(error):
                    return
                await asyncio.sleep(0)
                continue
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
            await spending.settle(reservation, rng.randint(estimate // 2, estimate))

    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(8))), timeout=60)
    spent = ledger.spent("acme").today_nano_usd
    assert budget <= spent <= budget + estimate
    assert ledger.reserved("acme") == 0


async def test_a_downgrading_tenant_gets_the_cheapest_tier_when_the_cascade_does_not_fit() -> None:
    ledger = InMemoryLedger(Clock())
    spending = Spending(ledger, catalogue())
    request = chat(budgeted(daily_nano=50_000, on_exhausted="downgrade"), ledger)
    full = await spending.reserve(request)
    assert len(full.request.model_class.tiers) == 3
    cheap = await spending.reserve(request)
    assert [t.model for t in cheap.request.model_class.tiers] == ["cheap"]
    assert "downgraded to the cheapest tier" in cheap.request.downgrade_reason
    assert "$0.00005" in cheap.request.downgrade_reason
    assert ledger.reserved("acme") == full.amount_nano_usd + cheap.amount_nano_usd


async def test_tenants_without_a_budget_hold_nothing_and_are_charged_directly() -> None:
    ledger = InMemoryLedger(Clock())
    spending = Spending(ledger, catalogue())
    reservation = await spending.reserve(chat(budgeted(), ledger))
    assert not reservation.held and ledger.reserved("acme") == 0
    await spending.settle(reservation, 70)
    assert ledger.spent("acme").today_nano_usd == 70


def test_amounts_keep_three_significant_digits() -> None:
    assert [format_usd(n) for n in (0, 50_000, 71_500, 5_300_000, 10**9, 99_999_999)] == [
        "$0.00",
        "$0.00005",
        "$0.0000715",
        "$0.0053",
        "$1.00",
        "$0.10",
    ]

"""Tenant budgets: rejection with the budget in the message, or a downgrade to the cheapest tier."""

import copy
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.router.admission import Admission, Asked
from services.router.budgets import InMemoryLedger
from services.router.cascade import Cascade
from services.router.model import StageName
from services.router.pipeline import Pipeline, complete
from services.router.policy import parse_policy
from shared.chat import Role, Sampling, Turn
from shared.errors import BudgetExhausted
from shared.tokens import TokenCounter
from tests.unit.router.fakes import FakeCache, FakeCompressor, FakeModels, answer
from tests.unit.router.fixtures import catalogue, policy_doc
from tests.unit.router.test_cascade import REFUSAL, TRACER


def budget_policy(**budget):
    doc = copy.deepcopy(policy_doc())
    doc["tenants"]["acme"]["budget"] = budget
    doc["tenants"]["acme"]["max_cost_usd"] = "0.5"
    return parse_policy(doc, catalogue())


def admit(policy, ledger, **overrides):
    args: dict[str, Any] = {
        "request_id": "",
        "model_class": "",
        "turns": (Turn(Role.USER, "q?"),),
        "sampling": Sampling(),
        "cache_mode": None,
        "max_cost_nano_usd": 0,
    }
    args.update(overrides)
    return Admission(policy, TokenCounter(), 10_000, ledger).admit("acme-key", Asked(**args))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_ledger_counts_per_day_and_month_and_rolls_over() -> None:
    clock = Clock()
    ledger = InMemoryLedger(clock)
    ledger.record("acme", 100)
    ledger.record("acme", 50)
    ledger.record("other", 7)
    spent = ledger.spent("acme")
    assert (spent.today_nano_usd, spent.charged_requests_today) == (150, 2)
    assert (spent.day, spent.month) == ("2026-11-30", "2026-11")
    clock.now += timedelta(hours=2)  # a new day and a new month
    spent = ledger.spent("acme")
    assert (spent.today_nano_usd, spent.month_nano_usd, spent.charged_requests_today) == (0, 0, 0)
    assert (spent.day, spent.month) == ("2026-12-01", "2026-12")
    ledger.record("acme", 5)
    assert ledger.spent("acme").month_nano_usd == 5
    assert ledger.spent("acme").charged_requests_today == 1


def test_a_charge_that_is_not_a_request_adds_cost_but_no_request() -> None:
    ledger = InMemoryLedger(Clock())
    ledger.record("acme", 100)
    ledger.record("acme", 40, request=False)  # a background audit of a cache hit
    spent = ledger.spent("acme")
    assert (spent.today_nano_usd, spent.month_nano_usd) == (140, 140)
    assert spent.charged_requests_today == 1


def test_exhausted_daily_budget_is_rejected_with_the_budget_in_the_message() -> None:
    ledger = InMemoryLedger(Clock())
    policy = budget_policy(daily_usd=1)
    admit(policy, ledger)
    ledger.record("acme", 1_000_000_000)
    with pytest.raises(
        BudgetExhausted, match=r"daily budget of \$1.00 is exhausted \(\$1.00 spent today\)"
    ):
        admit(policy, ledger)


def test_exhausted_monthly_budget_downgrades_when_the_policy_says_so() -> None:
    ledger = InMemoryLedger(Clock())
    ledger.record("acme", 3_000_000_000)
    request = admit(budget_policy(monthly_usd=2, on_exhausted="downgrade"), ledger)
    assert [t.model for t in request.model_class.tiers] == ["cheap"]
    assert "monthly budget of $2.00" in request.downgrade_reason


async def test_downgraded_request_never_escalates_and_spend_is_recorded() -> None:
    ledger = InMemoryLedger(Clock())
    ledger.record("acme", 3_000_000_000)
    request = admit(budget_policy(monthly_usd=2, on_exhausted="downgrade"), ledger)
    models = FakeModels({"cheap": answer(REFUSAL, "cheap", cost=40)})
    pipeline = Pipeline(
        FakeCache(), FakeCompressor(), Cascade(models, TRACER), catalogue(), TokenCounter(), ledger
    )
    result = await complete(pipeline, request, time.monotonic() + 5)
    assert models.calls == ["cheap"] and result.model == "cheap"
    tier = next(line for line in result.lines if line.stage is StageName.TIER)
    assert "downgraded to the cheapest tier" in tier.detail
    assert ledger.spent("acme").month_nano_usd == 3_000_000_040


def test_policy_default_cost_cap_applies_unless_the_caller_sets_one() -> None:
    ledger = InMemoryLedger(Clock())
    assert admit(budget_policy(), ledger).max_cost_nano_usd == 500_000_000
    assert admit(budget_policy(), ledger, max_cost_nano_usd=7).max_cost_nano_usd == 7

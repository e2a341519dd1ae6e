"""Deferred jobs hold their worst case at the batch price from submit: a tenant cannot submit
jobs beyond its budget, a finished job settles its cost once, and a job the batcher never took
lets go of its hold at once."""

from __future__ import annotations

import asyncio
import copy
import re
import time
from datetime import timedelta
from decimal import Decimal

import pytest

from services.router.budgets import InMemoryLedger, format_usd
from services.router.deferred import (
    JOB_LEASE_S,
    DeferredItem,
    DeferredPlan,
    DeferredWork,
    JobReport,
    JobStatus,
    Submitted,
)
from services.router.policy import Policy
from services.router.spending import JobSpending, prompt_upper_bound
from shared.chat import Sampling
from shared.errors import BudgetExhausted, Unavailable
from shared.pricing import PriceCatalogue, TokenUsage, parse_catalogue
from tests.unit.router.fixtures import CATALOGUE_DOC
from tests.unit.router.test_budgets import Clock, budget_policy
from tests.unit.router.test_deferred import FakeBatches, item, report

ITEMS = 10
CLASS_MAX_TOKENS = 64  # the fixture's chat class cap, which items without max_tokens get


def discounted() -> PriceCatalogue:
    """The fixture prices with Batch API discounts, so the batch price is told apart."""
    doc = copy.deepcopy(CATALOGUE_DOC)
    for model in doc["models"].values():
        model["batch_discount"] = 0.5
    return parse_catalogue(doc)


def worst_case(model: str, items: list[DeferredItem]) -> int:
    price = discounted().price(model)
    return sum(
        price.cost_nano_usd(
            TokenUsage(prompt_upper_bound(i.turns), i.sampling.max_tokens or CLASS_MAX_TOKENS),
            batch=True,
        )
        for i in items
    )


def job(n: int = ITEMS) -> list[DeferredItem]:
    return [item(f"Classify review {i}: great product") for i in range(n)]


def room_for_one_job(on_exhausted: str = "reject") -> Policy:
    """A daily budget one job's worst case fits in, and not two."""
    daily = Decimal(worst_case("top", job()) * 3 // 2) / 1_000_000_000
    return budget_policy(daily_usd=str(daily), on_exhausted=on_exhausted)


class RecordingBatches(FakeBatches):
    """Remembers what the tenant held while each job was being submitted; fails on demand."""

    def __init__(self, ledger: InMemoryLedger, failure: BaseException | None = None) -> None:
        super().__init__()
        self.ledger = ledger
        self.failure = failure
        self.held_at_submit: list[int] = []

    async def submit(
        self, key: str, request_id: str, plan: DeferredPlan, deadline: float
    ) -> JobReport:
        self.held_at_submit.append(self.ledger.reserved("acme"))
        if self.failure is not None:
            raise self.failure
        return await super().submit(key, request_id, plan, deadline)


def work_for(policy: Policy, batches: FakeBatches, ledger: InMemoryLedger) -> DeferredWork:
    return DeferredWork(policy, batches, JobSpending(ledger, discounted()))


async def submit(work: DeferredWork, request_id: str = "", n: int = ITEMS) -> Submitted:
    return await work.submit("acme-key", request_id, "", job(n), time.monotonic() + 30)


async def test_jobs_beyond_the_budget_are_refused_once_it_is_held() -> None:
    ledger = InMemoryLedger()
    batches = RecordingBatches(ledger)
    work = work_for(room_for_one_job(), batches, ledger)
    amount = worst_case("top", job())
    await submit(work)
    # The first job's worst case is held before it reaches the batcher, at the batch price.
    assert batches.held_at_submit == [amount] and ledger.reserved("acme") == amount
    with pytest.raises(BudgetExhausted) as refused:
        await submit(work)
    message = str(refused.value)
    assert f"{format_usd(amount)} held by requests in flight" in message
    assert f"this job may cost up to {format_usd(amount)}" in message
    assert re.search(r"daily budget of \$0\.\d+ has \$0\.\d+ left", message), message
    assert len(batches.plans) == 1, "the refused job never reached the batcher"
    assert ledger.spent("acme").today_nano_usd == 0


async def test_a_downgrading_tenant_gets_the_cheapest_tier_when_the_job_does_not_fit() -> None:
    ledger = InMemoryLedger()
    batches = RecordingBatches(ledger)
    work = work_for(room_for_one_job("downgrade"), batches, ledger)
    first = await submit(work)
    second = await submit(work)
    assert (first.plan.model, second.plan.model) == ("top", "cheap")
    assert "this job may cost up to" in second.plan.downgrade_reason
    assert second.plan.downgrade_reason.endswith("downgraded to the cheapest tier")
    assert ledger.reserved("acme") == worst_case("top", job()) + worst_case("cheap", job())


async def test_an_items_own_max_tokens_sets_its_worst_case() -> None:
    ledger = InMemoryLedger()
    work = work_for(budget_policy(daily_usd="100"), RecordingBatches(ledger), ledger)
    items = [item("Summarise: a"), item("Summarise: b")]
    items[1] = DeferredItem("", items[1].turns, Sampling(max_tokens=4000), items[1].response_format)
    await work.submit("acme-key", "", "", items, time.monotonic() + 30)
    assert ledger.reserved("acme") == worst_case("top", items)


async def test_a_finished_job_settles_its_cost_once_however_often_it_is_read() -> None:
    ledger = InMemoryLedger()
    batches = RecordingBatches(ledger)
    work = work_for(room_for_one_job(), batches, ledger)
    submitted = await submit(work)
    assert ledger.reserved("acme") == worst_case("top", job())
    batches.next = report(JobStatus.COMPLETED, cost=700)
    deadline = time.monotonic() + 30
    await asyncio.gather(*(work.get("acme-key", submitted.job_id, deadline) for _ in range(5)))
    await work.cancel("acme-key", submitted.job_id, deadline)
    spent = ledger.spent("acme")
    assert (spent.today_nano_usd, spent.charged_requests_today) == (700, 1)
    assert ledger.reserved("acme") == 0
    # The hold is gone, so the next job fits again.
    await submit(work)


async def test_a_failed_or_cancelled_job_frees_its_hold_without_a_charge() -> None:
    ledger = InMemoryLedger()
    batches = RecordingBatches(ledger)
    work = work_for(room_for_one_job(), batches, ledger)
    for status in (JobStatus.FAILED, JobStatus.CANCELLED):
        submitted = await submit(work)
        assert ledger.reserved("acme") == worst_case("top", job())
        batches.next = report(status, cost=0)
        await work.get("acme-key", submitted.job_id, time.monotonic() + 30)
        assert ledger.reserved("acme") == 0
        batches.next = report(JobStatus.QUEUED)
    assert ledger.spent("acme").charged_requests_today == 0


async def test_a_batcher_failure_at_submit_releases_the_hold() -> None:
    ledger = InMemoryLedger()
    batches = RecordingBatches(ledger, Unavailable("no batcher replica reachable"))
    work = work_for(room_for_one_job(), batches, ledger)
    for _ in range(3):  # each failure frees its hold, so the next attempt fits again
        with pytest.raises(Unavailable):
            await submit(work)
        assert ledger.reserved("acme") == 0
    assert batches.held_at_submit == [worst_case("top", job())] * 3


async def test_a_cancelled_submit_keeps_its_hold_and_its_retry_holds_it_once() -> None:
    ledger = InMemoryLedger()
    batches = RecordingBatches(ledger, asyncio.CancelledError())
    work = work_for(room_for_one_job(), batches, ledger)
    with pytest.raises(asyncio.CancelledError):
        await submit(work, request_id="req-7")
    # The batcher may have taken the job before the caller went away: the hold stays.
    amount = worst_case("top", job())
    assert ledger.reserved("acme") == amount
    batches.failure = None
    retried = await submit(work, request_id="req-7")
    assert retried.plan.model == "top" and ledger.reserved("acme") == amount


async def test_a_job_nobody_reads_lets_go_of_the_budget_after_its_lease() -> None:
    clock = Clock()
    ledger = InMemoryLedger(clock)
    work = work_for(room_for_one_job(), RecordingBatches(ledger), ledger)
    await submit(work)
    clock.now += timedelta(seconds=JOB_LEASE_S - 60)
    with pytest.raises(BudgetExhausted):
        await submit(work)
    clock.now += timedelta(seconds=120)
    await submit(work)
    assert ledger.reserved("acme") == worst_case("top", job())


async def test_a_job_charged_before_it_had_a_hold_is_not_charged_again() -> None:
    ledger = InMemoryLedger()
    batches = RecordingBatches(ledger)
    work = work_for(room_for_one_job(), batches, ledger)
    submitted = await submit(work)
    assert ledger.reserved("acme") == worst_case("top", job())
    # As the router charged a finished job before jobs held anything.
    ledger.charge_once("acme", submitted.job_id, 700)
    batches.next = report(JobStatus.COMPLETED, cost=700)
    await work.get("acme-key", submitted.job_id, time.monotonic() + 30)
    assert ledger.spent("acme").today_nano_usd == 700
    assert ledger.reserved("acme") == 0

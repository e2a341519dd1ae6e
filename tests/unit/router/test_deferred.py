"""Deferred work: validation, the model chosen, job ids, budgets, and charging a job once."""

from __future__ import annotations

import re
import time
from dataclasses import replace

import pytest

from services.router.budgets import InMemoryLedger
from services.router.deferred import (
    DeferredAnswer,
    DeferredItem,
    DeferredPlan,
    DeferredWork,
    JobReport,
    JobStatus,
    parse_job_id,
    plan_deferred,
)
from services.router.spending import JobSpending
from shared.chat import TEXT_FORMAT, Finish, Role, Sampling, Turn
from shared.errors import BudgetExhausted, InvalidRequest, NotFound, Unauthenticated
from shared.pricing import TokenUsage
from tests.unit.router.fixtures import catalogue, policy
from tests.unit.router.test_budgets import budget_policy


def item(text: str = "Classify: great product", custom_id: str = "") -> DeferredItem:
    return DeferredItem(custom_id, (Turn(Role.USER, text),), Sampling(), TEXT_FORMAT)


def report(status: JobStatus, cost: int = 0, job: str = "job-1") -> JobReport:
    answers = (DeferredAnswer("a", "positive", Finish.STOP, TokenUsage(5, 1), cost, ""),)
    return JobReport(job, status, "top", 1, 1, 0, answers, cost, cost * 2)


class FakeBatches:
    def __init__(self) -> None:
        self.plans: list[DeferredPlan] = []
        self.next: JobReport = report(JobStatus.QUEUED)
        self.keys: list[str] = []

    async def submit(
        self, key: str, request_id: str, plan: DeferredPlan, deadline: float
    ) -> JobReport:
        self.plans.append(plan)
        self.keys.append(key)
        return self.next

    async def get(self, key: str, tenant_id: str, job_id: str, deadline: float) -> JobReport:
        self.keys.append(key)
        if tenant_id != "acme" or job_id != self.next.batcher_job_id:
            raise NotFound(f"no batcher replica holds job {job_id} for this tenant")
        return self.next

    async def cancel(self, key: str, tenant_id: str, job_id: str, deadline: float) -> JobReport:
        return await self.get(key, tenant_id, job_id, deadline)


def test_plan_sends_every_request_to_the_last_tier_and_names_missing_ids() -> None:
    plan = plan_deferred(policy(), "acme-key", "", [item(custom_id="x"), item()], None)
    assert (plan.model, plan.tier, plan.max_tokens) == ("top", 3, 64)
    assert [i.custom_id for i in plan.items] == ["x", "item-1"]
    assert plan.tenant.tenant_id == "acme" and plan.policy_version == "test-1"


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "requests is empty"),
        ([item(), item("   ")], "requests[1]: messages[0].content is empty"),
        ([item(custom_id="a"), item(custom_id="a")], "requests[1].custom_id 'a' is used twice"),
        ([item(custom_id="x" * 65)], "65 characters, over the limit of 64"),
        (
            [replace(item(), sampling=Sampling(temperature=3.0))],
            "requests[0]: sampling.temperature=3.0",
        ),
    ],
)
def test_bad_requests_are_refused_naming_the_request(
    items: list[DeferredItem], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        plan_deferred(policy(), "acme-key", "", items, None)


def test_unknown_key_and_class_are_refused() -> None:
    with pytest.raises(Unauthenticated):
        plan_deferred(policy(), "wrong", "", [item()], None)
    with pytest.raises(InvalidRequest, match="unknown model_class 'nope'"):
        plan_deferred(policy(), "acme-key", "nope", [item()], None)


def test_spent_budget_refuses_or_downgrades_to_the_cheapest_tier() -> None:
    ledger = InMemoryLedger()
    ledger.record("acme", 2_000_000_000)
    spending = JobSpending(ledger, catalogue())
    with pytest.raises(BudgetExhausted, match="daily budget"):
        plan_deferred(budget_policy(daily_usd="1"), "acme-key", "", [item()], spending)
    downgrading = budget_policy(daily_usd="1", on_exhausted="downgrade")
    plan = plan_deferred(downgrading, "acme-key", "", [item()], spending)
    assert plan.model == "cheap" and "downgraded" in plan.downgrade_reason


def test_job_ids_round_trip_and_bad_ones_are_refused() -> None:
    assert parse_job_id("dj_0123456789abcdef_job-42") == ("0123456789abcdef", "job-42")
    for bad in ("job-42", "dj_short_job-1", "dj_0123456789abcdef_", "dj_0123456789abcdeg_j"):
        with pytest.raises(InvalidRequest, match="is not a deferred job id"):
            parse_job_id(bad)


async def test_finished_job_is_charged_once_however_often_it_is_read() -> None:
    batches, ledger = FakeBatches(), InMemoryLedger()
    work = DeferredWork(policy(), batches, JobSpending(ledger, catalogue()))
    deadline = time.monotonic() + 5
    submitted = await work.submit("acme-key", "req-1", "", [item()], deadline)
    assert submitted.job_id.startswith("dj_") and submitted.job_id.endswith("_job-1")
    assert ledger.spent("acme").today_nano_usd == 0
    batches.next = report(JobStatus.IN_PROGRESS, cost=0)
    await work.get("acme-key", submitted.job_id, deadline)
    batches.next = report(JobStatus.COMPLETED, cost=700)
    for _ in range(3):
        got = await work.get("acme-key", submitted.job_id, deadline)
        assert got.status is JobStatus.COMPLETED
    assert ledger.spent("acme").today_nano_usd == 700
    assert ledger.spent("acme").charged_requests_today == 1
    # Every call for the job was routed by the key its id carries.
    assert len(set(batches.keys)) == 1


async def test_another_tenants_job_is_not_found_under_the_router_job_id() -> None:
    work = DeferredWork(policy(), FakeBatches(), JobSpending(InMemoryLedger(), catalogue()))
    submitted = await work.submit("acme-key", "", "", [item()], time.monotonic() + 5)
    with pytest.raises(NotFound, match=f"no deferred job '{submitted.job_id}' for tenant 'other'"):
        await work.get("other-key", submitted.job_id, time.monotonic() + 5)

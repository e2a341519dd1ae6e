"""Deferred jobs' holds in the shared Redis ledger: two router replicas see one job's hold, a
finished job read on both is charged once, a job charged before holds existed is not charged
again, and a request's short lease does not cut a job's long one."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from services.router.budgets_redis import PREFIX, RedisLedger
from services.router.deferred import JOB_LEASE_S, DeferredWork, JobStatus
from services.router.policy import Budget
from services.router.spending import JobSpending
from shared.errors import BudgetExhausted
from tests.support import running_redis
from tests.unit.router.test_deferred import FakeBatches, report
from tests.unit.router.test_deferred_budgets import (
    discounted,
    job,
    room_for_one_job,
    worst_case,
)

pytestmark = pytest.mark.integration


def fixed_clock() -> datetime:
    return datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def replica(url: str, batches: FakeBatches) -> tuple[RedisLedger, DeferredWork]:
    ledger = RedisLedger.from_url(url, sync_s=60, clock=fixed_clock)
    return ledger, DeferredWork(room_for_one_job(), batches, JobSpending(ledger, discounted()))


async def held(url: str) -> dict[bytes | str, bytes | str]:
    client = aioredis.Redis.from_url(url)
    try:
        return await client.hgetall(PREFIX + "acme:held")
    finally:
        await client.aclose()


async def test_a_job_held_on_one_replica_is_settled_once_by_two(tmp_path: Path) -> None:
    batches = FakeBatches()
    with running_redis(tmp_path) as url:
        (a, work_a), (b, work_b) = replica(url, batches), replica(url, batches)
        deadline = time.monotonic() + 30
        submitted = await work_a.submit("acme-key", "req-1", "", job(), deadline)
        # Replica b sees a's hold: a second job does not fit beside it.
        with pytest.raises(BudgetExhausted, match="held by requests in flight"):
            await work_b.submit("acme-key", "req-2", "", job(), deadline)
        assert len(batches.plans) == 1
        batches.next = report(JobStatus.COMPLETED, cost=700)
        reads = [w.get("acme-key", submitted.job_id, deadline) for w in (work_a, work_b) * 4]
        await asyncio.wait_for(asyncio.gather(*reads), timeout=60)
        await a.sync()
        await b.sync()
        for ledger in (a, b):
            spent = ledger.spent("acme")
            assert (spent.today_nano_usd, spent.charged_requests_today) == (700, 1)
        assert await held(url) == {}
        # With the hold settled, b's job fits now.
        batches.next = report(JobStatus.QUEUED, job="job-2")
        await work_b.submit("acme-key", "req-2", "", job(), deadline)
        await a.close()
        await b.close()


async def test_a_job_charged_before_it_had_a_hold_is_charged_once(tmp_path: Path) -> None:
    batches = FakeBatches()
    with running_redis(tmp_path) as url:
        (a, work_a), (b, _) = replica(url, batches), replica(url, batches)
        job_id = "dj_0123456789abcdef_job-1"
        # What the previous router did when it saw the job finished.
        b.charge_once("acme", job_id, 700)
        await b.sync()
        batches.next = report(JobStatus.COMPLETED, cost=700)
        await work_a.get("acme-key", job_id, time.monotonic() + 30)
        await a.sync()
        assert a.spent("acme").today_nano_usd == 700
        await a.close()
        await b.close()


async def test_a_requests_short_lease_does_not_cut_a_jobs_hold(tmp_path: Path) -> None:
    with running_redis(tmp_path) as url:
        ledger, work = replica(url, FakeBatches())
        await work.submit("acme-key", "req-1", "", job(), time.monotonic() + 30)
        budget = Budget(daily_nano_usd=10**12)
        # An interactive request of the same tenant reserves with a one-second lease.
        short = RedisLedger.from_url(url, sync_s=60, clock=fixed_clock, lease_s=1)
        assert (await short.reserve("acme", "request-1", 5, budget, force=False)).granted
        await short.settle("acme", "request-1", 5)
        client = aioredis.Redis.from_url(url)
        try:
            for key in (PREFIX + "acme:held", PREFIX + "acme:held:expiry"):
                assert await client.ttl(key) > JOB_LEASE_S - 600, key
        finally:
            await client.aclose()
        assert list((await held(url)).values()) == [str(worst_case("top", job())).encode()]
        await short.close()
        await ledger.close()

"""Reservations in the shared Redis ledger: two router replicas reserving against one small
budget end at most one estimate over it; a crashed replica's reservations expire; an outage
degrades to the local view and loses no charge."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from services.router.budgets import exhausted_reason
from services.router.budgets_redis import RedisLedger
from services.router.policy import Budget
from tests.support import running_redis

pytestmark = pytest.mark.integration

ESTIMATE = 10_000
BUDGET = Budget(daily_nano_usd=45_000, monthly_nano_usd=1_000_000)


def fixed_clock() -> datetime:
    return datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


async def spend_until_refused(ledger: RedisLedger, rng: random.Random, served: list[int]) -> None:
    """One client of one replica: reserve, spend part of the estimate, settle; until the budget
    is exhausted."""
    while True:
        reservation_id = uuid.uuid4().hex
        hold = await ledger.reserve("acme", reservation_id, ESTIMATE, BUDGET, force=False)
        if not hold.granted:
            if exhausted_reason(BUDGET, hold.spend) is not None:
                return
            await asyncio.sleep(0.001)  # room is held by requests in flight; try again
            continue
        await asyncio.sleep(rng.random() / 100)
        cost = rng.randint(ESTIMATE // 2, ESTIMATE)
        served.append(cost)
        await ledger.settle("acme", reservation_id, cost)


async def test_two_replicas_end_at_most_one_estimate_over_the_budget(tmp_path: Path) -> None:
    rng = random.Random(7)
    with running_redis(tmp_path) as url:
        a = RedisLedger.from_url(url, sync_s=60, clock=fixed_clock)
        b = RedisLedger.from_url(url, sync_s=60, clock=fixed_clock)
        served: list[int] = []
        clients = [spend_until_refused(ledger, rng, served) for ledger in (a, b) * 8]
        await asyncio.wait_for(asyncio.gather(*clients), timeout=120)
        await a.sync()
        total = a.spent("acme").today_nano_usd
        assert total == sum(served), "every settle reached the shared ledger once"
        assert BUDGET.daily_nano_usd <= total <= BUDGET.daily_nano_usd + ESTIMATE
        assert a.spent("acme").charged_requests_today == len(served)
        await a.close()
        await b.close()


async def test_a_crashed_replicas_reservation_frees_itself(tmp_path: Path) -> None:
    with running_redis(tmp_path) as url:
        crashed = RedisLedger.from_url(url, sync_s=60, clock=fixed_clock, lease_s=1)
        alive = RedisLedger.from_url(url, sync_s=60, clock=fixed_clock)
        budget = Budget(daily_nano_usd=ESTIMATE)
        assert (await crashed.reserve("acme", "r-1", ESTIMATE, budget, force=False)).granted
        refused = await alive.reserve("acme", "r-2", ESTIMATE, budget, force=False)
        assert not refused.granted and refused.reserved_nano_usd == ESTIMATE
        # The crashed replica never settles; its lease runs out on Redis's clock.
        deadline = time.monotonic() + 30
        while not (await alive.reserve("acme", "r-2", ESTIMATE, budget, force=False)).granted:
            assert time.monotonic() < deadline, "the lease never ran out"
            await asyncio.sleep(0.2)
        await alive.settle("acme", "r-2", 100)
        assert alive.spent("acme").today_nano_usd == 100
        await crashed.close()
        await alive.close()


async def test_an_outage_decides_locally_and_keeps_every_settle(tmp_path: Path) -> None:
    with running_redis(tmp_path / "first") as url:
        ledger = RedisLedger.from_url(url, sync_s=60, clock=fixed_clock)
        assert (await ledger.reserve("acme", "in-redis", ESTIMATE, BUDGET, force=False)).granted
    # Redis is gone: reservations are decided on this replica's view, settles are queued.
    local = await ledger.reserve("acme", "local", ESTIMATE, BUDGET, force=False)
    assert local.granted and not ledger.healthy
    await ledger.settle("acme", "in-redis", 300)
    await ledger.settle("acme", "local", 200)
    assert ledger.spent("acme").today_nano_usd == 500
    port = urlsplit(url).port
    assert port is not None
    with running_redis(tmp_path / "second", port=port):
        await ledger.sync()
        await ledger.sync()  # a second sync sends nothing twice
        assert ledger.healthy
        assert ledger.spent("acme").today_nano_usd == 500
        check = aioredis.Redis.from_url(url)
        assert int(await check.get("sluice:ledger:acme:2026-11-27") or 0) == 500
        await check.aclose()
        await ledger.close()

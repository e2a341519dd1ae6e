"""RedisLedger against a real redis-server: replicas see each other's spend after a sync, and
an outage loses no increment."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from services.router.budgets_redis import RedisLedger
from tests.support import running_redis

pytestmark = pytest.mark.integration


def fixed_clock() -> datetime:
    return datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


async def test_replicas_share_spend_after_a_sync(tmp_path: Path) -> None:
    with running_redis(tmp_path) as url:
        a = RedisLedger.from_url(url, sync_s=60, clock=fixed_clock)
        b = RedisLedger.from_url(url, sync_s=60, clock=fixed_clock)
        a.record("acme", 100)
        a.record("acme", 100)
        b.record("acme", 50)
        b.record("acme", 10, request=False)  # a cache audit: billed, not a request
        b.record("zeta", 7)
        # Before a sync each replica knows only what it served itself.
        assert (a.spent("acme").today_nano_usd, b.spent("acme").today_nano_usd) == (200, 60)
        await a.sync()
        await b.sync()
        await a.sync()
        for ledger in (a, b):
            spent = ledger.spent("acme")
            assert (spent.today_nano_usd, spent.month_nano_usd) == (260, 260)
            assert spent.charged_requests_today == 3
            assert (spent.day, spent.month) == ("2026-11-27", "2026-11")
        # A tenant this replica never served is read once it is tracked.
        assert a.spent("zeta").today_nano_usd == 0
        fresh = RedisLedger.from_url(url, sync_s=60, clock=fixed_clock)
        fresh.track(["acme", "zeta"])
        await fresh.start()
        assert (fresh.spent("acme").today_nano_usd, fresh.spent("zeta").today_nano_usd) == (260, 7)
        await fresh.close()
        await a.close()
        await b.close()


async def test_an_outage_keeps_increments_queued_until_redis_is_back(tmp_path: Path) -> None:
    with running_redis(tmp_path / "first") as url:
        ledger = RedisLedger.from_url(url, sync_s=60)
        ledger.record("acme", 100)
        await ledger.sync()
        assert ledger.healthy and ledger.spent("acme").today_nano_usd == 100
    # Redis is gone (and had no persistence): the ledger keeps counting what it serves.
    ledger.record("acme", 30)
    await ledger.sync()
    assert not ledger.healthy
    assert ledger.spent("acme").today_nano_usd == 130
    port = urlsplit(url).port
    assert port is not None
    with running_redis(tmp_path / "second", port=port):
        await ledger.sync()
        assert ledger.healthy
        # The queued 30 reached the new server; the 100 died with the first one.
        assert ledger.spent("acme").today_nano_usd == 30
        await ledger.close()


async def test_a_job_seen_finished_by_two_replicas_is_charged_once(tmp_path: Path) -> None:
    with running_redis(tmp_path) as url:
        a = RedisLedger.from_url(url, sync_s=60, clock=fixed_clock)
        b = RedisLedger.from_url(url, sync_s=60, clock=fixed_clock)
        for ledger in (a, b, a):
            ledger.charge_once("acme", "dj_0123456789abcdef_job-1", 900)
            await ledger.sync()
        b.charge_once("acme", "dj_0123456789abcdef_job-2", 100)
        await b.sync()
        await a.sync()
        spent = a.spent("acme")
        assert (spent.today_nano_usd, spent.month_nano_usd) == (1000, 1000)
        assert spent.charged_requests_today == 2
        await a.close()
        await b.close()

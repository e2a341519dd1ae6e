"""The usage record's durable backends: SQLite on local disk, and Redis shared by replicas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from services.router.usage import Period, UsageBackend, UsageKey, UsageRow
from services.router.usage_redis import PREFIX, RedisUsage
from services.router.usage_sqlite import SqliteUsage
from tests.support import running_redis

KEY = UsageKey("2026-03-14", "acme", "chat", "chat/text/no-tools/max_tokens unset", 2, "m", "eu")
MARCH = Period(date(2026, 3, 1), date(2026, 3, 31))


async def _exercise(first: UsageBackend, second: UsageBackend) -> None:
    """Two writers add up per key; reads filter by period and tenant."""
    await first.add({KEY: {"cost": 5, "requests": 1, "saved.cache": -2}})
    await second.add({KEY: {"cost": 7, "requests": 1}, replace(KEY, tenant="b"): {"cost": 1}})
    await second.add({UsageKey("2026-04-01", "acme", "chat", "c", 1, "m", "eu"): {"cost": 100}})
    rows = await first.read(MARCH, frozenset({"acme"}))
    assert rows == [UsageRow(KEY, {"cost": 12, "requests": 2, "saved.cache": -2})]
    assert len(await second.read(MARCH, None)) == 2


async def test_sqlite_adds_up_across_instances_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "usage" / "usage.sqlite3"
    await _exercise(SqliteUsage(path), SqliteUsage(path))
    # A restarted router reads what the one before it recorded.
    again = await SqliteUsage(path).read(Period(date(2026, 3, 14), date(2026, 3, 14)), None)
    assert sum(r.counters["cost"] for r in again) == 13


@pytest.fixture
async def redis_url(tmp_path: Path) -> AsyncIterator[str]:
    with running_redis(tmp_path) as url:
        yield url


async def test_redis_keeps_one_hash_per_day_that_replicas_add_to(redis_url: str) -> None:
    first, second = RedisUsage.from_url(redis_url), RedisUsage.from_url(redis_url)
    try:
        await _exercise(first, second)
        client = aioredis.Redis.from_url(redis_url)
        keys = sorted(
            k if isinstance(k, str) else k.decode() for k in await client.keys(PREFIX + "*")
        )
        assert keys == [PREFIX + "2026-03-14", PREFIX + "2026-04-01"]
        assert await client.ttl(PREFIX + "2026-03-14") > 0
        await client.aclose()
    finally:
        await first.close()
        await second.close()

"""RedisUsage: the usage record (usage.py) shared by every router replica.

One hash per UTC day, `sluice:usage:<day>`, whose fields are the record's dimensions and one
counter name, JSON-encoded (`["tenant", "class", "request class", tier, "model", "region",
"cost"]`), and whose values are the counters. Each flush adds its counters with HINCRBY in one
MULTI/EXEC, so replicas add up without coordinating, and the record grows with the number of
distinct combinations a day sees, never with the number of requests. A day's hash expires
`RETENTION_DAYS` after it was last written.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping

import redis.asyncio as aioredis

from services.router.usage import Period, UsageKey, UsageRow

PREFIX = "sluice:usage:"
RETENTION_DAYS = 400


def field_name(key: UsageKey, counter: str) -> str:
    dims = [key.tenant, key.model_class, key.request_class, key.tier, key.model, key.region]
    return json.dumps([*dims, counter], separators=(",", ":"))


def parse_field(day: str, name: str) -> tuple[UsageKey, str]:
    tenant, model_class, request_class, tier, model, region, counter = json.loads(name)
    return UsageKey(day, tenant, model_class, request_class, int(tier), model, region), counter


class RedisUsage:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    @classmethod
    def from_url(cls, url: str) -> RedisUsage:
        return cls(aioredis.Redis.from_url(url, socket_timeout=2.0))

    async def add(self, cells: Mapping[UsageKey, Mapping[str, int]]) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            days: set[str] = set()
            for key, counters in cells.items():
                days.add(key.day)
                for counter, amount in counters.items():
                    if amount:
                        pipe.hincrby(PREFIX + key.day, field_name(key, counter), amount)
            for day in days:
                pipe.expire(PREFIX + day, RETENTION_DAYS * 86_400)
            await pipe.execute()

    async def read(self, period: Period, tenants: frozenset[str] | None) -> list[UsageRow]:
        days = period.days()
        async with self._client.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(PREFIX + day)
            hashes = await pipe.execute()
        cells: dict[UsageKey, Counter[str]] = {}
        for day, fields in zip(days, hashes, strict=True):
            for name, value in fields.items():
                key, counter = parse_field(day, name.decode())
                if tenants is None or key.tenant in tenants:
                    cells.setdefault(key, Counter())[counter] += int(value)
        return [UsageRow(key, dict(counters)) for key, counters in sorted(cells.items())]

    async def close(self) -> None:
        await self._client.aclose()

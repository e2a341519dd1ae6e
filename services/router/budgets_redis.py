"""RedisLedger: one budget ledger shared by every router replica.

Admission reads the ledger synchronously on every request, so a Redis round trip there would
put the network on the hot path. Instead each replica keeps a local view:

- `record` adds to the local counts at once and queues the increment;
- every `sync_s` a background task sends the queued increments (INCRBY in one MULTI/EXEC, with
  an expiry so finished periods free themselves) and reads back the totals of the tenants this
  replica has seen, which include the other replicas' spend;
- `spent` is the last totals read plus the increments not yet sent.

So a replica sees the others' spend at most `sync_s` late, and a budget can be overrun by what
the other replicas spend in that time. When Redis cannot be reached the increments stay queued
(nothing is lost) and each replica enforces what it knows, which is the in-memory ledger's
behaviour; the next successful sync catches up.

Keys: `sluice:ledger:<tenant>:<period>` (nano-USD) and `sluice:ledger:<tenant>:<day>:n`
(charged requests), where a period is a UTC day (`2026-11-27`) or month (`2026-11`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.router.budgets import Spend, periods

LOG = logging.getLogger(__name__)
PREFIX = "sluice:ledger:"
# Long enough to outlive its period wherever the replicas' clocks are, short enough to let go.
DAY_TTL_S = 3 * 86_400
MONTH_TTL_S = 40 * 86_400
DEFAULT_SYNC_S = 0.5
CHARGE_TTL_S = 40 * 86_400
# Marks the charge id and adds the cost in one step, so two replicas that both see a job
# finish charge it once, and a crash cannot leave the mark without the charge.
CHARGE_ONCE_LUA = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[4]) then
  redis.call('INCRBY', KEYS[2], ARGV[1]); redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('INCRBY', KEYS[3], ARGV[1]); redis.call('EXPIRE', KEYS[3], ARGV[3])
  redis.call('INCRBY', KEYS[4], 1); redis.call('EXPIRE', KEYS[4], ARGV[2])
  return 1
end
return 0
"""


def _keys(tenant_id: str, day: str, month: str) -> tuple[str, str, str]:
    base = PREFIX + tenant_id + ":"
    return base + day, base + month, base + day + ":n"


def _ttl_s(key: str) -> int:
    """A month key (period `YYYY-MM`) lives longer than a day key (`YYYY-MM-DD`)."""
    period = key.removesuffix(":n").rsplit(":", 1)[1]
    return MONTH_TTL_S if len(period) == len("YYYY-MM") else DAY_TTL_S


class RedisLedger:
    def __init__(
        self,
        client: aioredis.Redis,
        sync_s: float = DEFAULT_SYNC_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._sync_s = sync_s
        self._clock = clock
        # Totals as Redis last reported them, and increments not yet sent, by key.
        self._synced: dict[str, int] = {}
        self._pending: Counter[str] = Counter()
        self._tenants: set[str] = set()
        # Charges by id waiting for the next sync: (charge id, tenant, cost, day, month).
        self._charges: list[tuple[str, str, int, str, str]] = []
        self._charge_once = client.register_script(CHARGE_ONCE_LUA)
        self._task: asyncio.Task[None] | None = None
        self.healthy = True

    @classmethod
    def from_url(
        cls,
        url: str,
        sync_s: float = DEFAULT_SYNC_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> RedisLedger:
        return cls(aioredis.Redis.from_url(url, socket_timeout=2.0), sync_s, clock)

    def track(self, tenant_ids: Iterable[str]) -> None:
        """Reads these tenants' totals from every sync on, before this replica serves them (the
        router tracks every tenant of its policies, so a new replica starts with their spend)."""
        self._tenants.update(tenant_ids)

    def _view(self, key: str) -> int:
        return self._synced.get(key, 0) + self._pending[key]

    def spent(self, tenant_id: str) -> Spend:
        self._tenants.add(tenant_id)
        day, month = periods(self._clock())
        day_key, month_key, count_key = _keys(tenant_id, day, month)
        return Spend(self._view(day_key), self._view(month_key), self._view(count_key), day, month)

    def record(self, tenant_id: str, cost_nano_usd: int, *, request: bool = True) -> None:
        self._tenants.add(tenant_id)
        day_key, month_key, count_key = _keys(tenant_id, *periods(self._clock()))
        self._pending.update({day_key: cost_nano_usd, month_key: cost_nano_usd})
        if request:
            self._pending[count_key] += 1

    def charge_once(self, tenant_id: str, charge_id: str, cost_nano_usd: int) -> None:
        """Queued for the next sync, which applies it unless another replica already did; until
        then it does not show in spent(), like another replica's spend."""
        self._tenants.add(tenant_id)
        self._charges.append((charge_id, tenant_id, cost_nano_usd, *periods(self._clock())))

    async def _send_charges(self) -> None:
        while self._charges:
            charge_id, tenant_id, cost, day, month = self._charges[0]
            day_key, month_key, count_key = _keys(tenant_id, day, month)
            keys = [PREFIX + "charge:" + charge_id, day_key, month_key, count_key]
            await self._charge_once(keys, [cost, DAY_TTL_S, MONTH_TTL_S, CHARGE_TTL_S])
            self._charges.pop(0)

    async def sync(self) -> None:
        """Sends the queued increments and charges, then reads back the totals of every known
        tenant."""
        try:
            await self._send_charges()
        except RedisError as error:
            self._degraded(error)
            return
        sending, self._pending = self._pending, Counter()
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                for key, amount in sending.items():
                    pipe.incrby(key, amount)
                    pipe.expire(key, _ttl_s(key))
                await pipe.execute()
        except RedisError as error:
            self._pending.update(sending)  # kept, to be sent by the next sync
            self._degraded(error)
            return
        day, month = periods(self._clock())
        keys = [key for tenant in sorted(self._tenants) for key in _keys(tenant, day, month)]
        try:
            values = await self._client.mget(keys) if keys else []
        except RedisError as error:
            # Sent but not read back: count them locally until the next read.
            self._synced = dict(Counter(self._synced) + sending)
            self._degraded(error)
            return
        self._synced = {k: int(v) for k, v in zip(keys, values, strict=True) if v is not None}
        if not self.healthy:
            LOG.info("budget ledger: Redis reachable again")
        self.healthy = True

    def _degraded(self, error: RedisError) -> None:
        if self.healthy:
            LOG.warning("budget ledger: Redis unreachable, enforcing local spend: %s", error)
        self.healthy = False

    async def _sync_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sync_s)
            await self.sync()

    async def start(self) -> None:
        await self.sync()
        self._task = asyncio.ensure_future(self._sync_forever())

    async def close(self) -> None:
        """Stops syncing after one last flush, so a draining replica's spend is not lost."""
        if self._task is not None:
            self._task.cancel()
        await self.sync()
        await self._client.aclose()

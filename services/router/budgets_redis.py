"""RedisLedger: one budget ledger shared by every router replica.

Tenants with a budget reserve and settle in Redis, one round trip each, so the check is atomic
across replicas:

- `reserve` runs RESERVE_LUA: it drops reservations whose lease ran out (a crashed replica's
  free themselves), checks `spent + reserved + estimate` against the day's and the month's
  limits (budgets.fits, the same rule as the in-memory ledger) and holds the estimate;
- `settle` runs SETTLE_LUA: it adds the actual cost to the day and month, once per reservation
  id (a marker makes a retried settle harmless), and removes the reservation;
- `settle_once` runs the same script for a deferred job, marked by the job's charge id instead,
  so whichever replica sees the job finished first charges it, and the others only release.

Charges of tenants without a budget stay off the network, on a lazily synced local view:

- `record` adds to the local counts at once and queues the increment;
- every `sync_s` a background task sends the queued increments (INCRBY in one MULTI/EXEC, with
  an expiry so finished periods free themselves) and reads back the totals of the tenants this
  replica has seen, which include the other replicas' spend;
- `spent` is the last totals read plus what is not yet sent.

When Redis cannot be reached nothing is lost and nothing crashes: increments and settles stay
queued for the next sync, and reservations are decided on this replica's view (its last totals,
its unsent charges and its own reservations), so each replica enforces what it knows, which is
the in-memory ledger's behaviour; the next successful sync catches up.

Keys: `sluice:ledger:<tenant>:<period>` (nano-USD) and `sluice:ledger:<tenant>:<day>:n`
(charged requests), where a period is a UTC day (`2026-11-27`) or month (`2026-11`);
`sluice:ledger:<tenant>:held` (reservation id -> nano-USD) with `...:held:expiry` (a sorted set
of the ids by lease end); `sluice:ledger:settled:<id>` (a settle's marker) and
`sluice:ledger:charge:<id>` (a deferred job's charge marker).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.router.budgets import Hold, Spend, budget_fits, periods
from services.router.policy import Budget

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


# A reservation outlives any request's deadline (an audit's is 60 s); after it a crashed
# replica's reservations no longer hold back the tenant's budget.
LEASE_S = 300
# Long enough for a settle queued during an outage to be retried without counting twice.
SETTLED_TTL_S = 86_400
# KEYS: day, month, held, held expiry. ARGV: id, amount, daily limit, monthly limit, force,
# lease. Returns {granted, spent today, spent this month, held by the others}. An id held
# already (a retried job submit) is held anew, not counted against itself; the keys' expiry
# only ever grows, so a request's short lease cannot cut a job's long one.
RESERVE_LUA = """
local now = tonumber(redis.call('TIME')[1])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)) do
  redis.call('HDEL', KEYS[3], id)
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local reserved = 0
local holds = redis.call('HGETALL', KEYS[3])
for i = 1, #holds, 2 do
  if holds[i] ~= ARGV[1] then reserved = reserved + tonumber(holds[i + 1]) end
end
local day = tonumber(redis.call('GET', KEYS[1]) or '0')
local month = tonumber(redis.call('GET', KEYS[2]) or '0')
local amount = tonumber(ARGV[2])
local function fits(limit, spent)
  limit = tonumber(limit)
  return limit == 0 or spent + reserved + amount <= limit or (reserved == 0 and spent < limit)
end
local granted = ARGV[5] == '1' or (fits(ARGV[3], day) and fits(ARGV[4], month))
if granted then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[6]), ARGV[1])
  for i = 3, 4 do
    if redis.call('TTL', KEYS[i]) < tonumber(ARGV[6]) then
      redis.call('EXPIRE', KEYS[i], ARGV[6])
    end
  end
end
return {granted and 1 or 0, day, month, reserved}
"""
# KEYS: settled marker, day, month, count, held, held expiry. ARGV: cost, day ttl, month ttl,
# marker ttl, counts as a request, id. Returns {spent today, this month, requests today}.
SETTLE_LUA = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[4]) and tonumber(ARGV[1]) > 0 then
  redis.call('INCRBY', KEYS[2], ARGV[1]); redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('INCRBY', KEYS[3], ARGV[1]); redis.call('EXPIRE', KEYS[3], ARGV[3])
  if ARGV[5] == '1' then
    redis.call('INCRBY', KEYS[4], 1); redis.call('EXPIRE', KEYS[4], ARGV[2])
  end
end
redis.call('HDEL', KEYS[5], ARGV[6]); redis.call('ZREM', KEYS[6], ARGV[6])
return {tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(redis.call('GET', KEYS[3]) or '0'),
        tonumber(redis.call('GET', KEYS[4]) or '0')}
"""


@dataclass(frozen=True)
class _Settle:
    """A settle to send: queued first, so a failed or cancelled send is retried by sync."""

    reservation_id: str
    tenant_id: str
    cost_nano_usd: int
    request: bool
    keys: tuple[str, str, str]
    # The once-only marker: a request's own (settled:<id>), or a job's charge id (charge:<id>).
    marker: str = ""
    marker_ttl_s: int = SETTLED_TTL_S


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
        lease_s: int = LEASE_S,
    ) -> None:
        self._client = client
        self._sync_s = sync_s
        self._lease_s = lease_s
        self._clock = clock
        # Totals as Redis last reported them, and increments not yet sent, by key.
        self._synced: dict[str, int] = {}
        self._pending: Counter[str] = Counter()
        self._tenants: set[str] = set()
        # Charges by id waiting for the next sync: (charge id, tenant, cost, day, month).
        self._charges: list[tuple[str, str, int, str, str]] = []
        self._charge_once = client.register_script(CHARGE_ONCE_LUA)
        self._reserve = client.register_script(RESERVE_LUA)
        self._settle = client.register_script(SETTLE_LUA)
        # Settles not yet applied in Redis, and their amounts by key (they show in spent()).
        self._settles: list[_Settle] = []
        self._unsent: Counter[str] = Counter()
        # Reservations decided on this replica's view while Redis was unreachable.
        self._local_holds: dict[str, dict[str, int]] = {}
        self._task: asyncio.Task[None] | None = None
        self.healthy = True

    @classmethod
    def from_url(
        cls,
        url: str,
        sync_s: float = DEFAULT_SYNC_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        lease_s: int = LEASE_S,
    ) -> RedisLedger:
        return cls(aioredis.Redis.from_url(url, socket_timeout=2.0), sync_s, clock, lease_s)

    def track(self, tenant_ids: Iterable[str]) -> None:
        """Reads these tenants' totals from every sync on, before this replica serves them (the
        router tracks every tenant of its policies, so a new replica starts with their spend)."""
        self._tenants.update(tenant_ids)

    def _view(self, key: str) -> int:
        return self._synced.get(key, 0) + self._pending[key] + self._unsent[key]

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

    async def reserve(
        self,
        tenant_id: str,
        reservation_id: str,
        amount: int,
        budget: Budget,
        *,
        force: bool,
        lease_s: int | None = None,
    ) -> Hold:
        self._tenants.add(tenant_id)
        lease = self._lease_s if lease_s is None else lease_s
        day_key, month_key, _ = _keys(tenant_id, *periods(self._clock()))
        held_key = PREFIX + tenant_id + ":held"
        keys = [day_key, month_key, held_key, held_key + ":expiry"]
        limits = [budget.daily_nano_usd, budget.monthly_nano_usd]
        try:
            granted, day, month, reserved = await self._reserve(
                keys, [reservation_id, amount, *limits, int(force), lease]
            )
        except RedisError as error:
            self._degraded(error)
            return self._reserve_locally(tenant_id, reservation_id, amount, budget, force)
        self._synced.update({day_key: int(day), month_key: int(month)})
        return Hold(bool(granted), self.spent(tenant_id), int(reserved))

    def _reserve_locally(
        self, tenant_id: str, reservation_id: str, amount: int, budget: Budget, force: bool
    ) -> Hold:
        held = self._local_holds.setdefault(tenant_id, {})
        others = sum(v for k, v in held.items() if k != reservation_id)
        hold = Hold(False, self.spent(tenant_id), others)
        if force or budget_fits(budget, hold.spend, hold.reserved_nano_usd, amount):
            held[reservation_id] = amount
            return Hold(True, hold.spend, hold.reserved_nano_usd)
        return hold

    async def settle(
        self, tenant_id: str, reservation_id: str, cost_nano_usd: int, *, request: bool = True
    ) -> None:
        local = self._local_holds.get(tenant_id, {})
        if reservation_id in local:
            # Held on this replica's view only: nothing to release in Redis.
            del local[reservation_id]
            if cost_nano_usd:
                self.record(tenant_id, cost_nano_usd, request=request)
            return
        settle = _Settle(
            reservation_id,
            tenant_id,
            cost_nano_usd,
            request and cost_nano_usd > 0,
            _keys(tenant_id, *periods(self._clock())),
        )
        self._queue(settle)
        try:
            await self._send_settle(settle)
        except RedisError as error:
            self._degraded(error)

    async def settle_once(
        self, tenant_id: str, reservation_id: str, charge_id: str, cost_nano_usd: int
    ) -> None:
        """One SETTLE_LUA call whose marker is the charge id that charge_once uses, so a job
        charged before it had a reservation is not charged again."""
        self._tenants.add(tenant_id)
        self._local_holds.get(tenant_id, {}).pop(reservation_id, None)
        settle = _Settle(
            reservation_id,
            tenant_id,
            cost_nano_usd,
            cost_nano_usd > 0,
            _keys(tenant_id, *periods(self._clock())),
            marker=PREFIX + "charge:" + charge_id,
            marker_ttl_s=CHARGE_TTL_S,
        )
        self._queue(settle)
        try:
            await self._send_settle(settle)
        except RedisError as error:
            self._degraded(error)

    def _queue(self, settle: _Settle) -> None:
        self._settles.append(settle)
        day_key, month_key, count_key = settle.keys
        self._unsent.update({day_key: settle.cost_nano_usd, month_key: settle.cost_nano_usd})
        self._unsent[count_key] += int(settle.request)

    async def _send_settle(self, settle: _Settle) -> None:
        day_key, month_key, count_key = settle.keys
        held_key = PREFIX + settle.tenant_id + ":held"
        marker = settle.marker or PREFIX + "settled:" + settle.reservation_id
        keys = [marker, *settle.keys, held_key, held_key + ":expiry"]
        ttls = [DAY_TTL_S, MONTH_TTL_S, settle.marker_ttl_s]
        day, month, count = await self._settle(
            keys,
            [settle.cost_nano_usd, *ttls, int(settle.request), settle.reservation_id],
        )
        if settle in self._settles:  # a sync may have sent it meanwhile
            self._settles.remove(settle)
            self._unsent.subtract({day_key: settle.cost_nano_usd, month_key: settle.cost_nano_usd})
            self._unsent[count_key] -= int(settle.request)
        self._synced.update({day_key: int(day), month_key: int(month), count_key: int(count)})

    async def _send_charges(self) -> None:
        for settle in list(self._settles):
            await self._send_settle(settle)
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

"""Per-tenant spending: a ledger of what each tenant spent today and this month (UTC), and the
money it holds for requests in flight.

A request of a tenant with a budget reserves its worst-case cost before any model is called and
settles its actual cost after (spending.py owns that); the ledger decides a reservation
atomically, by `fits`. The in-memory ledger counts what this router replica served; the Redis
ledger (budgets_redis.py) shares spend and reservations between replicas.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from services.router.policy import Budget, OnExhausted, TenantPolicy
from shared.errors import BudgetExhausted


@dataclass(frozen=True)
class Spend:
    today_nano_usd: int
    month_nano_usd: int
    # Requests charged today (those that cost nothing, such as cache hits, are not recorded).
    charged_requests_today: int = 0
    # The UTC periods the figures cover, e.g. "2026-11-27" and "2026-11".
    day: str = ""
    month: str = ""


@dataclass(frozen=True)
class Hold:
    """A ledger's decision on a reservation, with the figures it decided on."""

    granted: bool
    spend: Spend
    # What other requests in flight held when this one was decided.
    reserved_nano_usd: int


def fits(limit_nano_usd: int, spent: int, reserved: int, amount: int) -> bool:
    """Whether a reservation of `amount` fits a limit (0: none). It fits when it fits in what
    spend and the reservations in flight leave; or, when nothing is in flight and something is
    left, alone, so a budget smaller than one request's worst case still serves its requests
    one at a time. Either way a tenant ends at most one request's estimate over its budget.
    budgets_redis.py's RESERVE_LUA applies the same rule."""
    if not limit_nano_usd:
        return True
    if spent + reserved + amount <= limit_nano_usd:
        return True
    return reserved == 0 and spent < limit_nano_usd


def budget_fits(budget: Budget, spend: Spend, reserved: int, amount: int) -> bool:
    return fits(budget.daily_nano_usd, spend.today_nano_usd, reserved, amount) and fits(
        budget.monthly_nano_usd, spend.month_nano_usd, reserved, amount
    )


class BudgetLedger(Protocol):
    def spent(self, tenant_id: str) -> Spend: ...

    def record(self, tenant_id: str, cost_nano_usd: int, *, request: bool = True) -> None:
        """Adds a charge to the tenant's day and month; `request` says whether it also counts
        as a charged request (a background audit of a cache hit costs money but is not one)."""

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
        """Holds `amount` for a request when it fits the budget (or when `force`d), atomically
        with every other reservation of the tenant. A reservation id held already is held anew
        (a retried job submit), not counted against itself. The hold lets go by itself after
        `lease_s` (None: the ledger's default) unless settled first."""

    async def settle(
        self, tenant_id: str, reservation_id: str, cost_nano_usd: int, *, request: bool = True
    ) -> None:
        """Releases the reservation and records its actual cost (nothing when it is zero)."""


class JobLedger(BudgetLedger, Protocol):
    def charge_once(self, tenant_id: str, charge_id: str, cost_nano_usd: int) -> None:
        """Records the cost unless a charge with this id was recorded before (a deferred job is
        charged when it is first seen finished, however often it is read)."""

    async def settle_once(
        self, tenant_id: str, reservation_id: str, charge_id: str, cost_nano_usd: int
    ) -> None:
        """Releases the reservation and records the cost unless a charge with this id was
        recorded before (by charge_once or settle_once, on any replica sharing the ledger): a
        deferred job's hold is settled whenever it is seen finished, and charged once."""


class ServedLedger(JobLedger, Protocol):
    """A ledger as the router's server runs it: started before serving, closed after."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def periods(now: datetime) -> tuple[str, str]:
    """The UTC day and month a charge at `now` counts in, e.g. ("2026-11-27", "2026-11")."""
    return now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")


# Charge ids remembered by one in-memory ledger; the oldest are forgotten first.
MAX_CHARGE_IDS = 100_000


class InMemoryLedger:
    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._totals: dict[tuple[str, str], int] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._charged: dict[str, None] = {}
        # Reservations in flight: tenant -> reservation id -> nano-USD held.
        self._held: dict[str, dict[str, int]] = {}
        # When the reservations given a lease let go (a deferred job nobody reads again).
        self._lease_ends: dict[str, datetime] = {}
        # The day the entries were last pruned for; pruning runs once a day, not per request.
        self._pruned_for = ""

    def spent(self, tenant_id: str) -> Spend:
        day, month = periods(self._clock())
        return Spend(
            self._totals.get((tenant_id, day), 0),
            self._totals.get((tenant_id, month), 0),
            self._counts.get((tenant_id, day), 0),
            day,
            month,
        )

    def record(self, tenant_id: str, cost_nano_usd: int, *, request: bool = True) -> None:
        day, month = periods(self._clock())
        if day != self._pruned_for:
            # Periods that have passed are dropped, so the ledger stays two entries per tenant.
            self._totals = {k: v for k, v in self._totals.items() if k[1] in (day, month)}
            self._counts = {k: v for k, v in self._counts.items() if k[1] == day}
            self._pruned_for = day
        for period in (day, month):
            self._totals[(tenant_id, period)] = (
                self._totals.get((tenant_id, period), 0) + cost_nano_usd
            )
        self._counts[(tenant_id, day)] = self._counts.get((tenant_id, day), 0) + int(request)

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
        # No await between the check and the hold: on one event loop the pair is atomic.
        held = self._held.setdefault(tenant_id, {})
        self._drop_lapsed(held)
        others = sum(v for k, v in held.items() if k != reservation_id)
        hold = Hold(False, self.spent(tenant_id), others)
        if force or budget_fits(budget, hold.spend, hold.reserved_nano_usd, amount):
            held[reservation_id] = amount
            if lease_s is not None:
                self._lease_ends[reservation_id] = self._clock() + timedelta(seconds=lease_s)
            return Hold(True, hold.spend, hold.reserved_nano_usd)
        return hold

    def _drop_lapsed(self, held: dict[str, int]) -> None:
        """Forgets the tenant's reservations whose lease has run out. Requests settle in a
        `finally`, so only leased holds (jobs) can be left behind."""
        now = self._clock()
        for reservation_id in [r for r in held if r in self._lease_ends]:
            if self._lease_ends[reservation_id] <= now:
                del held[reservation_id]
                del self._lease_ends[reservation_id]

    async def settle(
        self, tenant_id: str, reservation_id: str, cost_nano_usd: int, *, request: bool = True
    ) -> None:
        held = self._held.get(tenant_id, {})
        held.pop(reservation_id, None)
        self._lease_ends.pop(reservation_id, None)
        if not held:
            self._held.pop(tenant_id, None)
        if cost_nano_usd:
            self.record(tenant_id, cost_nano_usd, request=request)

    def reserved(self, tenant_id: str) -> int:
        """What this tenant's requests in flight hold."""
        held = self._held.get(tenant_id, {})
        self._drop_lapsed(held)
        return sum(held.values())

    async def start(self) -> None:
        """Nothing to connect to; here so every ledger has the same lifecycle."""

    async def close(self) -> None:
        """Nothing to flush: the counts live and die with this replica."""

    def charge_once(self, tenant_id: str, charge_id: str, cost_nano_usd: int) -> None:
        if charge_id in self._charged:
            return
        self._charged[charge_id] = None
        if len(self._charged) > MAX_CHARGE_IDS:
            del self._charged[next(iter(self._charged))]
        self.record(tenant_id, cost_nano_usd)

    async def settle_once(
        self, tenant_id: str, reservation_id: str, charge_id: str, cost_nano_usd: int
    ) -> None:
        await self.settle(tenant_id, reservation_id, 0)
        if cost_nano_usd:
            self.charge_once(tenant_id, charge_id, cost_nano_usd)


def format_usd(nano: int) -> str:
    """Dollars with at least two decimals and enough to show three significant digits, so a
    small amount stays readable: $1.00, $0.0053, $0.00005, $0.0000715."""
    amount = Decimal(nano) / 1_000_000_000
    decimals = 2
    if 0 < abs(amount) < Decimal("0.1"):
        # adjusted() is the exponent of the leading digit, e.g. -5 for 0.0000715.
        decimals = max(decimals, 2 - amount.adjusted())
    quantized = amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    whole, _, fraction = f"{quantized:f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def exhausted_reason(budget: Budget, spend: Spend) -> str | None:
    """Which budget is spent, in words, or None while both have room."""
    if budget.daily_nano_usd and spend.today_nano_usd >= budget.daily_nano_usd:
        return (
            f"daily budget of {format_usd(budget.daily_nano_usd)} is exhausted "
            f"({format_usd(spend.today_nano_usd)} spent today)"
        )
    if budget.monthly_nano_usd and spend.month_nano_usd >= budget.monthly_nano_usd:
        return (
            f"monthly budget of {format_usd(budget.monthly_nano_usd)} is exhausted "
            f"({format_usd(spend.month_nano_usd)} spent this month)"
        )
    return None


def check_budget(tenant: TenantPolicy, ledger: BudgetLedger) -> str | None:
    """Raises BudgetExhausted, or returns a downgrade reason when the policy downgrades instead."""
    if not (tenant.budget.daily_nano_usd or tenant.budget.monthly_nano_usd):
        return None  # no limit to reach: the ledger need not be read
    reason = exhausted_reason(tenant.budget, ledger.spent(tenant.tenant_id))
    if reason is None:
        return None
    if tenant.budget.on_exhausted is OnExhausted.REJECT:
        raise BudgetExhausted(f"tenant {tenant.tenant_id!r}: {reason}")
    return f"{reason}; downgraded to the cheapest tier"

"""Per-tenant spending: a ledger of what each tenant spent today and this month (UTC).

The in-memory ledger counts what this router replica served; with several replicas each
enforces its share, until a shared ledger (Redis, like the cache's scale-out store) backs the
same protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
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


class BudgetLedger(Protocol):
    def spent(self, tenant_id: str) -> Spend: ...

    def record(self, tenant_id: str, cost_nano_usd: int, *, request: bool = True) -> None:
        """Adds a charge to the tenant's day and month; `request` says whether it also counts
        as a charged request (a background audit of a cache hit costs money but is not one)."""


class JobLedger(BudgetLedger, Protocol):
    def charge_once(self, tenant_id: str, charge_id: str, cost_nano_usd: int) -> None:
        """Records the cost unless a charge with this id was recorded before (a deferred job is
        charged when it is first seen finished, however often it is read)."""


class ServedLedger(JobLedger, Protocol):
    """A ledger as the router's server runs it: started before serving, closed after."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def charge(
    ledger: BudgetLedger | None, tenant_id: str, cost_nano_usd: int, *, request: bool = True
) -> None:
    """Records a charge on the ledger, when there is one and the charge is not zero."""
    if ledger is not None and cost_nano_usd:
        ledger.record(tenant_id, cost_nano_usd, request=request)


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


def _usd(nano: int) -> str:
    return f"${nano / 1e9:.2f}"


def exhausted_reason(budget: Budget, spend: Spend) -> str | None:
    """Which budget is spent, in words, or None while both have room."""
    if budget.daily_nano_usd and spend.today_nano_usd >= budget.daily_nano_usd:
        return (
            f"daily budget of {_usd(budget.daily_nano_usd)} is exhausted "
            f"({_usd(spend.today_nano_usd)} spent today)"
        )
    if budget.monthly_nano_usd and spend.month_nano_usd >= budget.monthly_nano_usd:
        return (
            f"monthly budget of {_usd(budget.monthly_nano_usd)} is exhausted "
            f"({_usd(spend.month_nano_usd)} spent this month)"
        )
    return None


def check_budget(tenant: TenantPolicy, ledger: BudgetLedger) -> str | None:
    """Raises BudgetExhausted, or returns a downgrade reason when the policy downgrades instead."""
    reason = exhausted_reason(tenant.budget, ledger.spent(tenant.tenant_id))
    if reason is None:
        return None
    if tenant.budget.on_exhausted is OnExhausted.REJECT:
        raise BudgetExhausted(f"tenant {tenant.tenant_id!r}: {reason}")
    return f"{reason}; downgraded to the cheapest tier"

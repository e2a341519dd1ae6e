"""Spending: the one owner of a request's money on the request path.

A request that reaches the models is reserved before compression and the cascade run, and
settled once after, on every path: answered, no tier answered, cancelled, or failed. For a
tenant with a budget the reservation holds the request's worst case in the ledger, atomically
with the tenant's other requests in flight (budgets.fits), so concurrent requests (on one
replica, or on several sharing the Redis ledger) cannot all pass a check that only one of them
fits. Settling records the actual cost and releases the rest. A tenant therefore ends at most
one request's estimate over its budget, as long as no call costs more than its list price.

The estimate is the request's worst case: on every tier it may reach, its prompt
(`ChatRequest.prompt_tokens`) and its output cap (`max_tokens`, or the model class's) priced at
the model's dearest region, plus the judge's call where a tier has the judge gate, plus a
summary unless the class turns compression off; under a cost cap, only the tiers the cascade
would still enter (cascade.py stops escalating once the cap is reached).

When the estimate does not fit, a `reject` tenant gets RESOURCE_EXHAUSTED naming the amounts; a
`downgrade` tenant is served on its cheapest tier, always: that is what downgrading means, so
its spend on the cheapest tier is not bounded by the budget, only its escalations are.

Tenants without a budget reserve nothing, and their charges take the ledger's fast path.

Settling also writes the request's row of the usage record (usage.py) that `sluice report`
reads, with the answer's cost table when there is one; a cache hit, which reserves nothing, is
written by `served_from_cache`.

Deferred (Batch API) jobs have their own owner, JobSpending, on the same rules: a job holds its
worst case (every request's prompt and output cap at the model's dearest batch price) from
submit, for a lease as long as the provider's completion window and a margin, and is settled
with its actual cost when first seen finished, by whichever replica sees it, charged once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from services.router.budgets import (
    BudgetLedger,
    Hold,
    JobLedger,
    check_budget,
    exhausted_reason,
    format_usd,
)
from services.router.judge import JUDGE_MAX_TOKENS
from services.router.model import ChatRequest, RouteResult
from services.router.policy import Budget, ModelClass, OnExhausted, TenantPolicy, TierSpec
from services.router.usage import UsageLog
from services.router.usage_rows import answered_row, unanswered_row
from shared.chat import Turn
from shared.errors import BudgetExhausted
from shared.pricing import PriceCatalogue, TokenUsage

# The judge's instruction and the framing around the question and answer it is shown.
JUDGE_FRAMING_TOKENS = 64
# Chat framing a request without a token count is assumed to add, per turn and per prompt.
TOKENS_PER_TURN = 4
TOKENS_PER_PROMPT = 3


@dataclass
class Reservation:
    """Money held for one request until it is settled, once."""

    # The request as it is to be served: downgraded to its cheapest tier when the budget said so.
    request: ChatRequest
    reservation_id: str
    amount_nano_usd: int
    # False for a tenant without a budget: nothing is held, so nothing is released.
    held: bool
    # Whether its charge counts as a request of the tenant's (a cache audit's does not).
    counts_as_request: bool = True
    settled: bool = False


def prompt_upper_bound(turns: Iterable[Turn]) -> int:
    """At least the prompt's tokens without counting them: a token is at least one UTF-8 byte.
    For requests built without admission, which counts the prompt once
    (ChatRequest.prompt_tokens)."""
    return sum(len(t.content.encode()) + TOKENS_PER_TURN for t in turns) + TOKENS_PER_PROMPT


def downgraded(request: ChatRequest, reason: str) -> ChatRequest:
    """The request on its model class's cheapest tier, never escalating."""
    chosen = request.model_class
    return replace(
        request,
        model_class=replace(chosen, tiers=chosen.tiers[:1]),
        downgrade_reason=request.downgrade_reason or f"{reason}; downgraded to the cheapest tier",
    )


def _left(limit: int, spent: int, reserved: int) -> int:
    return max(0, limit - spent - reserved)


def refusal_reason(budget: Budget, hold: Hold, amount: int, what: str = "this request") -> str:
    """Why a reservation was refused, with every amount readable; `what` names the work the
    amount is for."""
    exhausted = exhausted_reason(budget, hold.spend)
    if exhausted is not None:
        return exhausted
    spend, reserved = hold.spend, hold.reserved_nano_usd
    limits = (
        ("daily", budget.daily_nano_usd, spend.today_nano_usd, "today"),
        ("monthly", budget.monthly_nano_usd, spend.month_nano_usd, "this month"),
    )
    for name, limit, spent, period in limits:
        if limit and spent + reserved + amount > limit:
            left = format_usd(_left(limit, spent, reserved))
            return (
                f"{name} budget of {format_usd(limit)} has {left} left ({format_usd(spent)} "
                f"spent {period}, {format_usd(reserved)} held by requests in flight); "
                f"{what} may cost up to {format_usd(amount)}"
            )
    return f"the budget has no room for {what}"


class Spending:
    def __init__(
        self,
        ledger: BudgetLedger | None,
        catalogue: PriceCatalogue,
        usage: UsageLog | None = None,
    ) -> None:
        self._ledger = ledger
        self._catalogue = catalogue
        # The usage record `sluice report` reads: one row per settled request and cache hit.
        self._usage = usage

    def _price(self, model: str, usage: TokenUsage, *, batch: bool = False) -> int:
        """The call's cost in the model's dearest region (at its Batch API price if `batch`)."""
        regional = (p for (m, _), p in self._catalogue.regional.items() if m == model)
        prices = [self._catalogue.price(model), *regional]
        return max(price.cost_nano_usd(usage, batch=batch) for price in prices)

    def batch_estimate(self, model: str, calls: Iterable[TokenUsage]) -> int:
        """A Batch API job's worst case: every call at the model's dearest batch price."""
        return sum(self._price(model, usage, batch=True) for usage in calls)

    def _tier_worst(self, chosen: ModelClass, tier: TierSpec, prompt: int, output: int) -> int:
        cost = self._price(tier.model, TokenUsage(prompt, output))
        if "judge" in tier.gates and tier is not chosen.tiers[-1] and chosen.judge_model:
            # The judge reads the question and the answer; the last tier is never judged.
            judge_prompt = prompt + output + JUDGE_FRAMING_TOKENS
            cost += self._price(chosen.judge_model, TokenUsage(judge_prompt, JUDGE_MAX_TOKENS))
        return cost

    def estimate(self, request: ChatRequest) -> int:
        """The request's worst-case cost in nano-USD (see the module docstring)."""
        chosen = request.model_class
        prompt = request.prompt_tokens or prompt_upper_bound(request.turns)
        output = request.sampling.max_tokens or chosen.max_tokens
        costs = [self._tier_worst(chosen, tier, prompt, output) for tier in chosen.tiers]
        # The start-tier predictor may enter at any tier; otherwise the cascade starts at one.
        starts = range(len(costs)) if chosen.learned_start else range(min(1, len(costs)))
        cascade = max(
            (self._capped(costs[start:], request.max_cost_nano_usd) for start in starts), default=0
        )
        summary = 0
        if chosen.compression is None or chosen.compression.enabled:
            # A summary is written by a cheap model, reading the prompt and writing less than it.
            summary = self._price(chosen.tiers[0].model, TokenUsage(prompt, prompt))
        return cascade + summary

    @staticmethod
    def _capped(costs: list[int], cap: int) -> int:
        """What tiers costing `costs` can spend in a cascade that enters no tier once its spend
        reaches the cap (0: no cap)."""
        spent = 0
        for cost in costs:
            if cap and spent >= cap:
                break
            spent += cost
        return spent

    def prompt_cost(self, request: ChatRequest, tier_index: int) -> int:
        """What a call on this tier that was cut short is billed anyway: its prompt."""
        tier = next(t for t in request.model_class.tiers if t.index == tier_index)
        prompt = request.prompt_tokens or prompt_upper_bound(request.turns)
        return self._price(tier.model, TokenUsage(prompt, 0))

    def precheck(self, tenant: TenantPolicy) -> str | None:
        """The cheap check on this replica's view, before any work: raises BudgetExhausted for a
        spent budget, or returns the downgrade reason. The reservation is what decides."""
        return None if self._ledger is None else check_budget(tenant, self._ledger)

    async def reserve(
        self, request: ChatRequest, *, counts_as_request: bool = True, may_downgrade: bool = True
    ) -> Reservation:
        """Holds the request's worst case; raises BudgetExhausted when it does not fit (or
        serves it downgraded, when the tenant's policy says so and `may_downgrade`)."""
        budget = request.tenant.budget
        if self._ledger is None or not (budget.daily_nano_usd or budget.monthly_nano_usd):
            return Reservation(request, "", 0, held=False, counts_as_request=counts_as_request)
        tenant_id = request.tenant.tenant_id
        amount = self.estimate(request)
        reservation_id = uuid.uuid4().hex
        hold = await self._ledger.reserve(tenant_id, reservation_id, amount, budget, force=False)
        if hold.granted:
            return Reservation(request, reservation_id, amount, True, counts_as_request)
        reason = refusal_reason(budget, hold, amount)
        if budget.on_exhausted is OnExhausted.REJECT or not may_downgrade:
            raise BudgetExhausted(f"tenant {tenant_id!r}: {reason}")
        cheapest = downgraded(request, reason)
        amount = self.estimate(cheapest)
        await self._ledger.reserve(tenant_id, reservation_id, amount, budget, force=True)
        return Reservation(cheapest, reservation_id, amount, True, counts_as_request)

    def served_from_cache(self, request: ChatRequest, result: RouteResult) -> None:
        """A cache hit reserves and costs nothing, but what it saved goes in the usage record."""
        if self._usage is not None:
            self._usage.record(answered_row(self._usage.today(), request, result, self._catalogue))

    def _record_usage(
        self, reservation: Reservation, cost_nano_usd: int, result: RouteResult | None
    ) -> None:
        if self._usage is None:
            return
        request, day = reservation.request, self._usage.today()
        if result is not None:
            self._usage.record(answered_row(day, request, result, self._catalogue))
        elif cost_nano_usd:
            audit = not reservation.counts_as_request
            self._usage.record(unanswered_row(day, request, cost_nano_usd, audit=audit))

    async def settle(
        self, reservation: Reservation, cost_nano_usd: int, result: RouteResult | None = None
    ) -> None:
        """Records what the request cost and releases its reservation; a second call is a
        no-op, so a failure path may settle whatever the happy path did not. `result` is the
        answer's cost table, when there is one, for the usage record."""
        if reservation.settled:
            return
        reservation.settled = True
        self._record_usage(reservation, cost_nano_usd, result)
        if self._ledger is None:
            return
        tenant_id = reservation.request.tenant.tenant_id
        counts = reservation.counts_as_request
        if reservation.held:
            await self._ledger.settle(
                tenant_id, reservation.reservation_id, cost_nano_usd, request=counts
            )
        elif cost_nano_usd:
            self._ledger.record(tenant_id, cost_nano_usd, request=counts)


@dataclass(frozen=True)
class JobHold:
    """What a deferred job holds, and the tier it runs on (its cheapest when downgraded)."""

    tier: TierSpec
    amount_nano_usd: int
    # False for a tenant without a budget: nothing is held, so nothing is released.
    held: bool
    downgrade_reason: str = ""


class JobSpending:
    """The money of deferred (Batch API) jobs: a hold at submit, a settle once it finishes."""

    def __init__(self, ledger: JobLedger | None, catalogue: PriceCatalogue) -> None:
        self._ledger = ledger
        self._spending = Spending(ledger, catalogue)

    def precheck(self, tenant: TenantPolicy) -> str | None:
        return self._spending.precheck(tenant)

    async def reserve(
        self,
        tenant: TenantPolicy,
        reservation_id: str,
        calls: Sequence[TokenUsage],
        tiers: tuple[TierSpec, TierSpec],
        *,
        lease_s: int,
    ) -> JobHold:
        """Holds the job's worst case on `tiers[0]` for `lease_s`; raises BudgetExhausted when it
        does not fit, or holds it on `tiers[1]` (the cheapest) when the tenant downgrades, as a
        request's reservation does."""
        planned, cheapest = tiers
        budget = tenant.budget
        amount = self._spending.batch_estimate(planned.model, calls)
        if self._ledger is None or not (budget.daily_nano_usd or budget.monthly_nano_usd):
            return JobHold(planned, amount, held=False)
        reserve = self._ledger.reserve
        hold = await reserve(
            tenant.tenant_id, reservation_id, amount, budget, force=False, lease_s=lease_s
        )
        if hold.granted:
            return JobHold(planned, amount, held=True)
        reason = refusal_reason(budget, hold, amount, "this job")
        if budget.on_exhausted is OnExhausted.REJECT:
            raise BudgetExhausted(f"tenant {tenant.tenant_id!r}: {reason}")
        amount = self._spending.batch_estimate(cheapest.model, calls)
        await reserve(tenant.tenant_id, reservation_id, amount, budget, force=True, lease_s=lease_s)
        return JobHold(cheapest, amount, True, f"{reason}; downgraded to the cheapest tier")

    async def settle(
        self, tenant_id: str, reservation_id: str, job_id: str, cost_nano_usd: int
    ) -> None:
        """Releases a finished job's hold and charges its cost once per job id, however often
        and on whichever replica it is seen finished; a job submitted without a hold is only
        charged, once, as charge_once did."""
        if self._ledger is not None:
            await self._ledger.settle_once(tenant_id, reservation_id, job_id, cost_nano_usd)

    async def release(self, tenant_id: str, reservation_id: str, hold: JobHold) -> None:
        """Lets go of a hold whose job never reached the batcher."""
        if self._ledger is not None and hold.held:
            await self._ledger.settle(tenant_id, reservation_id, 0)

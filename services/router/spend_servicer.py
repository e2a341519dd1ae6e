"""Maps SpendService to the budget ledger and the usage record: a tenant reads what it has
spent and its usage, and nothing else, unless the router names it an admin tenant
(SLUICE_ROUTER_USAGE_ADMIN_TENANTS), whose key may read every tenant's usage."""

from __future__ import annotations

from datetime import UTC, date, datetime

import grpc
from sluice.router.v1 import spend_service_pb2 as pb
from sluice.router.v1 import spend_service_pb2_grpc as pb_grpc

from services.router.admission import api_key_from_metadata
from services.router.budgets import BudgetLedger
from services.router.policy import Policy, TenantPolicy
from services.router.public_errors import public_error
from services.router.usage import (
    BASELINE,
    CACHE_HITS,
    COST,
    REQUESTS,
    UsageLog,
    UsageRow,
    parse_period,
)
from shared.errors import SluiceError, abort_with

ORIGIN = "router"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SpendService"].full_name
Context = grpc.aio.ServicerContext[object, object]


class UsageNotPermitted(SluiceError):
    """A tenant asked for every tenant's usage without being an admin tenant."""

    code = grpc.StatusCode.PERMISSION_DENIED


def _today() -> date:
    return datetime.now(UTC).date()


class SpendServicer(pb_grpc.SpendServiceServicer):
    def __init__(
        self,
        policy: Policy,
        ledger: BudgetLedger,
        usage: UsageLog,
        admin_tenants: frozenset[str] = frozenset(),
    ) -> None:
        self._policy = policy
        self._ledger = ledger
        self._usage = usage
        self._admin_tenants = admin_tenants

    async def _tenant(self, context: Context) -> TenantPolicy:
        try:
            api_key = api_key_from_metadata(context.invocation_metadata() or ())
            return self._policy.authenticate(api_key)
        except SluiceError as error:
            await abort_with(context, ORIGIN, public_error(error))

    async def GetSpend(  # noqa: N802 - named by the proto
        self, request: pb.GetSpendRequest, context: Context
    ) -> pb.GetSpendResponse:
        tenant = await self._tenant(context)
        spend = self._ledger.spent(tenant.tenant_id)
        return pb.GetSpendResponse(
            tenant_id=tenant.tenant_id,
            day=spend.day,
            month=spend.month,
            today_nano_usd=spend.today_nano_usd,
            month_nano_usd=spend.month_nano_usd,
            charged_requests_today=spend.charged_requests_today,
            daily_budget_nano_usd=tenant.budget.daily_nano_usd,
            monthly_budget_nano_usd=tenant.budget.monthly_nano_usd,
        )

    async def GetUsage(  # noqa: N802 - named by the proto
        self, request: pb.GetUsageRequest, context: Context
    ) -> pb.GetUsageResponse:
        tenant = await self._tenant(context)
        try:
            period = parse_period(request.first_day, request.last_day, _today())
            if request.all_tenants and tenant.tenant_id not in self._admin_tenants:
                raise UsageNotPermitted(
                    f"tenant {tenant.tenant_id!r} may read only its own usage: all_tenants "
                    "needs a tenant listed in the router's SLUICE_ROUTER_USAGE_ADMIN_TENANTS"
                )
            tenants = None if request.all_tenants else frozenset({tenant.tenant_id})
            rows = await self._usage.read(period, tenants)
        except SluiceError as error:
            await abort_with(context, ORIGIN, public_error(error))
        return pb.GetUsageResponse(
            first_day=period.first.isoformat(),
            last_day=period.last.isoformat(),
            records=[usage_record(row) for row in rows],
        )


def usage_record(row: UsageRow) -> pb.UsageRecord:
    key, counters = row.key, row.counters
    return pb.UsageRecord(
        day=key.day,
        tenant_id=key.tenant,
        model_class=key.model_class,
        request_class=key.request_class,
        tier=key.tier,
        model=key.model,
        region=key.region,
        requests=counters.get(REQUESTS, 0),
        cache_hits=counters.get(CACHE_HITS, 0),
        cost_nano_usd=counters.get(COST, 0),
        baseline_cost_nano_usd=counters.get(BASELINE, 0),
        stage_costs=[pb.StageAmount(stage=s, nano_usd=n) for s, n in row.stage_costs.items()],
        stage_savings=[pb.StageAmount(stage=s, nano_usd=n) for s, n in row.stage_savings.items()],
    )

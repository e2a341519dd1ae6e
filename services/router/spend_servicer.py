"""Maps SpendService to the budget ledger: a tenant reads what it has spent, and nothing else."""

from __future__ import annotations

import grpc
from sluice.router.v1 import spend_service_pb2 as pb
from sluice.router.v1 import spend_service_pb2_grpc as pb_grpc

from services.router.admission import api_key_from_metadata
from services.router.budgets import BudgetLedger
from services.router.policy import Policy
from services.router.public_errors import public_error
from shared.errors import SluiceError, abort_with

ORIGIN = "router"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SpendService"].full_name
Context = grpc.aio.ServicerContext[object, object]


class SpendServicer(pb_grpc.SpendServiceServicer):
    def __init__(self, policy: Policy, ledger: BudgetLedger) -> None:
        self._policy = policy
        self._ledger = ledger

    async def GetSpend(  # noqa: N802 - named by the proto
        self, request: pb.GetSpendRequest, context: Context
    ) -> pb.GetSpendResponse:
        try:
            api_key = api_key_from_metadata(context.invocation_metadata() or ())
            tenant = self._policy.authenticate(api_key)
        except SluiceError as error:
            await abort_with(context, ORIGIN, public_error(error))
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

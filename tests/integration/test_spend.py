"""SpendService through the real mesh: the ledger charges exactly what the responses cost."""

from __future__ import annotations

import uuid

import grpc
import pytest
from sluice.router.v1 import spend_service_pb2 as spend_pb
from sluice.router.v1 import spend_service_pb2_grpc as spend_grpc

from shared.mesh import Mesh
from tests.support import DEV_KEY, ask, router_stub

pytestmark = pytest.mark.integration


async def test_ledger_grows_by_the_sum_of_response_costs(
    channel: grpc.aio.Channel, mesh: Mesh
) -> None:
    spend = spend_grpc.SpendServiceStub(channel)
    before = await spend.GetSpend(spend_pb.GetSpendRequest(), metadata=DEV_KEY, timeout=10)
    prompts = [f"Summarise the CAP theorem ({uuid.uuid4().hex[:8]})" for _ in range(3)]
    # The third asks the first prompt again: a cache hit costs nothing and is not charged.
    costs, hits = [], []
    for prompt in [*prompts, prompts[0]]:
        response = await router_stub(channel).Complete(ask(prompt), metadata=DEV_KEY, timeout=30)
        costs.append(response.cost.total_cost_nano_usd)
        hits.append(response.cache_hit)
    after = await spend.GetSpend(spend_pb.GetSpendRequest(), metadata=DEV_KEY, timeout=10)
    assert hits == [False, False, False, True] and all(c > 0 for c in costs[:3])
    assert after.today_nano_usd - before.today_nano_usd == sum(costs)
    assert after.month_nano_usd - before.month_nano_usd == sum(costs)
    assert after.charged_requests_today - before.charged_requests_today == 3
    assert after.tenant_id == before.tenant_id != ""
    assert after.day.startswith(after.month) and len(after.day) == 10


async def test_unknown_key_is_refused(channel: grpc.aio.Channel, mesh: Mesh) -> None:
    spend = spend_grpc.SpendServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await spend.GetSpend(
            spend_pb.GetSpendRequest(), metadata=(("x-api-key", "not-a-key"),), timeout=10
        )
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "unknown API key" in (raised.value.details() or "")

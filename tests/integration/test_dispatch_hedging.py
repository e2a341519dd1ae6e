"""Hedging against the real simulator's slow tail: the hedge wins, the slow call is cancelled
(the simulator sees its stream closed early), and its estimated cost is counted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.dispatcher import spans
from services.dispatcher.budgets import BudgetPolicy
from services.dispatcher.calls import DispatchResult
from tests.integration.dispatch_rig import Simulator, call, local_dispatcher, running

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def module_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    with running(tmp_path_factory.mktemp("dispatch-hedging"), "simulator") as mesh:
        yield Simulator(f"http://{mesh.address('simulator')}")


@pytest.fixture
def simulator(module_simulator: Simulator) -> Iterator[Simulator]:
    module_simulator.reset()
    yield module_simulator
    module_simulator.reset()


async def test_slow_call_is_hedged_the_hedge_wins_and_the_loser_is_cancelled(
    simulator: Simulator,
) -> None:
    # The hedge budget is not under test here: a busy machine may hedge during the warm-up.
    local = local_dispatcher(
        simulator, hedge_min_samples=16, budgets=BudgetPolicy(hedge_ratio=0.5, hedge_burst=10)
    )
    try:
        # Enough fast answers for a p95 to hedge on.
        for _ in range(40):
            await local.dispatcher.dispatch(call(), None)
        simulator.reset()
        simulator.patch("us-east", slow_rate=1.0, slow_factor=100)
        local.spans.clear()
        result = await local.dispatcher.dispatch(call(), None)
    finally:
        await local.http.aclose()
    assert isinstance(result, DispatchResult)
    assert result.hedged and result.hedge_won and result.region != "us-east"
    assert result.attempts == 2 and result.ttft_s < 1.0
    assert result.cancelled_cost_nano_usd > 0
    assert result.cost_nano_usd > result.cancelled_cost_nano_usd
    us = simulator.stats("us-east")
    assert us["slowed"] >= 1 and us["cancelled"] == 1, "the losing stream was closed early"
    loser = [
        s
        for s in local.spans.get_finished_spans()
        if (s.attributes or {}).get(spans.CANCELLED) is True
    ]
    assert len(loser) == 1 and (loser[0].attributes or {})["sluice.region"] == "us-east"


async def test_without_enough_samples_a_slow_call_is_waited_for(simulator: Simulator) -> None:
    local = local_dispatcher(simulator, hedge_min_samples=16)
    simulator.patch("us-east", slow_rate=1.0, slow_factor=10)
    try:
        result = await local.dispatcher.dispatch(call(), None)
    finally:
        await local.http.aclose()
    assert not result.hedged and result.region == "us-east"
    assert simulator.stats("eu-west")["received"] == 0

"""Dispatcher failure handling against the real simulator process and its fault injection:
outlier ejection and recovery, Retry-After, and the retry budget under a full outage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from services.dispatcher.budgets import BudgetPolicy
from shared.errors import Unavailable
from tests.integration.dispatch_rig import (
    REGIONS,
    LocalDispatcher,
    Simulator,
    call,
    local_dispatcher,
    running,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def module_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    with running(tmp_path_factory.mktemp("dispatch-failures"), "simulator") as mesh:
        yield Simulator(f"http://{mesh.address('simulator')}")


@pytest.fixture
def simulator(module_simulator: Simulator) -> Iterator[Simulator]:
    module_simulator.reset()
    yield module_simulator
    module_simulator.reset()


@pytest_asyncio.fixture(loop_scope="session")
async def fast_ejection(simulator: Simulator) -> AsyncIterator[LocalDispatcher]:
    local = local_dispatcher(simulator, eject_after_failures=3, eject_base_s=0.5, hedging=False)
    yield local
    await local.http.aclose()


async def test_ejection_keeps_traffic_away_then_a_probe_brings_it_back(
    simulator: Simulator, fast_ejection: LocalDispatcher
) -> None:
    dispatcher = fast_ejection.dispatcher
    simulator.patch("us-east", error_rate=1.0)
    for _ in range(3):
        result = await dispatcher.dispatch(call(), None)
        assert result.region != "us-east" and result.attempts == 2
    # Three consecutive 500s: us-east is ejected, and gets no call while it lasts.
    for _ in range(5):
        assert (await dispatcher.dispatch(call(), None)).attempts == 1
    assert simulator.stats("us-east")["received"] == 3
    simulator.patch("us-east", error_rate=0.0)
    await asyncio.sleep(0.6)
    # Half-open: one probe goes to us-east, succeeds, and the region is back in use.
    results = [await dispatcher.dispatch(call(), None) for _ in range(3)]
    assert [r.region for r in results] == ["us-east"] * 3
    assert simulator.stats("us-east")["received"] == 6


async def test_retry_after_is_honoured_per_endpoint(
    simulator: Simulator, fast_ejection: LocalDispatcher
) -> None:
    dispatcher = fast_ejection.dispatcher
    simulator.patch("us-east", rate_limit_rate=1.0, retry_after_s=1)
    first = await dispatcher.dispatch(call(), None)
    assert first.region != "us-east" and first.attempts == 2
    for _ in range(5):
        assert (await dispatcher.dispatch(call(), None)).region != "us-east"
    us = simulator.stats("us-east")
    assert us["received"] == 1 and us["faults"]["rate_limit"] == 1
    simulator.patch("us-east", rate_limit_rate=0.0)
    await asyncio.sleep(1.05)
    assert (await dispatcher.dispatch(call(), None)).region == "us-east"


async def test_retry_budget_prevents_a_retry_storm(simulator: Simulator) -> None:
    # Every region fails. Without a budget, 60 concurrent requests would make 180 calls.
    local = local_dispatcher(
        simulator, hedging=False, budgets=BudgetPolicy(retry_ratio=0.2, min_retry_concurrency=3)
    )
    for region in REGIONS:
        simulator.patch(region, error_rate=1.0)
    try:
        outcomes = await asyncio.gather(
            *(local.dispatcher.dispatch(call(), None) for _ in range(60)),
            return_exceptions=True,
        )
    finally:
        await local.http.aclose()
    assert all(isinstance(o, Unavailable) for o in outcomes)
    upstream_calls = sum(simulator.stats(r)["received"] for r in REGIONS)
    # 60 first calls, 20% of 60 retries, and the 3 retries always allowed in flight.
    assert 60 <= upstream_calls <= 60 + 12 + 3
    assert sum("retry budget exhausted" in str(o) for o in outcomes) >= 40

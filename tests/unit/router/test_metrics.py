"""The router's money counters: cost, baseline, and cost avoided split into what requests under
their baseline saved and what the others overran, so the two add up to baseline minus cost."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from services.router.metrics import RouterMetrics
from services.router.model import Outcome, StageLine, StageName
from tests.unit.router.door_rig import result_for
from tests.unit.router.fixtures import admit_acme, policy_doc


def value(registry: CollectorRegistry, name: str) -> float:
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == name
    )


def test_cost_avoided_and_overrun_add_up_to_baseline_minus_cost() -> None:
    registry = CollectorRegistry()
    metrics = RouterMetrics(registry)
    request = admit_acme(policy_doc(), "What is the capital of France?")
    line = StageLine(StageName.TIER, Outcome.USED, tier=1, model="cheap", cost_nano_usd=300)
    cheap = replace(result_for(request), lines=(line,), baseline_cost_nano_usd=1_000)
    dear = replace(cheap, baseline_cost_nano_usd=100)
    metrics.served(request, cheap)
    metrics.served(request, dear)
    assert value(registry, "sluice_router_cost_avoided_usd_total") == pytest.approx(700e-9)
    assert value(registry, "sluice_router_cost_overrun_usd_total") == pytest.approx(200e-9)
    saved = value(registry, "sluice_router_baseline_cost_usd_total") - value(
        registry, "sluice_router_cost_usd_total"
    )
    assert saved == pytest.approx(700e-9 - 200e-9)

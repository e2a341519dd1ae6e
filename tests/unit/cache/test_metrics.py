"""CacheMetrics: lookups by result, rejections by reason, and the served wrong-rate estimate."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.cache.metrics import CacheMetrics
from services.cache.model import HitKind, LookupResult


def test_lookups_rejections_and_the_wrong_rate_estimate() -> None:
    registry = CollectorRegistry()
    metrics = CacheMetrics(registry)
    for _ in range(4):
        metrics.looked_up("t", LookupResult(HitKind.SEMANTIC, namespace="ns", rejected=1))
    metrics.looked_up("t", LookupResult(HitKind.EXACT, namespace="ns"))
    metrics.looked_up("t", LookupResult(HitKind.MISS, namespace="ns", rejected=2))
    metrics.reported("t", "ns", correct=False, shadow=False)
    metrics.reported("t", "ns", correct=True, shadow=False)
    metrics.reported("t", "ns", correct=False, shadow=True)  # never served: not counted

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("sluice_cache_lookups_total", tenant="t", result="semantic_hit") == 4
    assert value("sluice_cache_lookups_total", tenant="t", result="exact_hit") == 1
    assert value("sluice_cache_lookups_total", tenant="t", result="miss") == 1
    assert value("sluice_cache_rejections_total", tenant="t", reason="verification") == 6
    assert value("sluice_cache_rejections_total", tenant="t", reason="reported_wrong") == 1
    assert value("sluice_cache_served_wrong_rate", namespace="ns") == 0.25

"""The dispatcher's Prometheus figures: hedges, failovers, ejections and spent budgets.

The budgets (budgets.py) decide whether a retry or hedge may be spent; these counters say how
often each was spent or refused since the process started, which is what a dashboard rates.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class DispatcherMetrics:
    """Counters a flight reports to as it hedges, fails over and sees endpoints ejected."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.hedges = Counter(
            "sluice_dispatcher_hedges",
            "Hedged calls sent, by the endpoint they went to.",
            ("endpoint",),
            registry=registry,
        )
        self.hedges_won = Counter(
            "sluice_dispatcher_hedges_won",
            "Hedged calls that answered first, by their endpoint.",
            ("endpoint",),
            registry=registry,
        )
        self.retries = Counter(
            "sluice_dispatcher_retries",
            "Failover calls after a failed one, by the endpoint they went to.",
            ("endpoint",),
            registry=registry,
        )
        self.budget_exhausted = Counter(
            "sluice_dispatcher_budget_exhausted",
            "Retries (budget=retry: the request failed) and hedges (budget=hedge: it waited "
            "on) that their budget refused, by model.",
            ("budget", "model"),
            registry=registry,
        )
        self.ejections = Counter(
            "sluice_dispatcher_ejections",
            "Times an endpoint was ejected as an outlier (consecutive failures, or a failed "
            "half-open probe).",
            ("endpoint",),
            registry=registry,
        )

    def hedged(self, endpoint: str) -> None:
        self.hedges.labels(endpoint).inc()

    def hedge_won(self, endpoint: str) -> None:
        self.hedges_won.labels(endpoint).inc()

    def retried(self, endpoint: str) -> None:
        self.retries.labels(endpoint).inc()

    def refused(self, budget: str, model: str) -> None:
        self.budget_exhausted.labels(budget, model).inc()

    def ejected(self, endpoint: str) -> None:
        self.ejections.labels(endpoint).inc()

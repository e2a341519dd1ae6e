"""The cache's Prometheus figures: lookups by outcome, candidates turned down by reason, and
each namespace's served wrong-rate estimate (served semantic hits later reported wrong)."""

from __future__ import annotations

from collections import defaultdict

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.cache.model import HitKind, LookupResult

_RESULTS = {HitKind.EXACT: "exact_hit", HitKind.SEMANTIC: "semantic_hit", HitKind.MISS: "miss"}


class CacheMetrics:
    """Counters the cache reports each lookup and each hit report to."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lookups = Counter(
            "sluice_cache_lookups",
            "Lookups by tenant and result: exact_hit, semantic_hit or miss.",
            ("tenant", "result"),
            registry=registry,
        )
        self.rejections = Counter(
            "sluice_cache_rejections",
            "Candidates turned down, by tenant and reason: verification (above the threshold "
            "but vetoed by the verifier or unproven under an error bound) or reported_wrong "
            "(a served hit the caller reported wrong, then removed).",
            ("tenant", "reason"),
            registry=registry,
        )
        self.semantic_served = Counter(
            "sluice_cache_semantic_hits_served",
            "Semantic hits served, by namespace.",
            ("namespace",),
            registry=registry,
        )
        self.reported_wrong = Counter(
            "sluice_cache_semantic_hits_reported_wrong",
            "Served semantic hits reported wrong, by namespace.",
            ("namespace",),
            registry=registry,
        )
        self.wrong_rate = Gauge(
            "sluice_cache_served_wrong_rate",
            "Estimated share of served semantic hits that were wrong, by namespace: hits "
            "reported wrong over hits served since the process started.",
            ("namespace",),
            registry=registry,
        )
        # Per namespace: [served, reported wrong], for the estimate.
        self._outcomes: defaultdict[str, list[int]] = defaultdict(lambda: [0, 0])

    def looked_up(self, tenant_id: str, result: LookupResult) -> None:
        self.lookups.labels(tenant_id, _RESULTS[result.kind]).inc()
        if result.rejected:
            self.rejections.labels(tenant_id, "verification").inc(result.rejected)
        if result.kind is HitKind.SEMANTIC:
            self.semantic_served.labels(result.namespace).inc()
            self._outcomes[result.namespace][0] += 1
            self._estimate(result.namespace)

    def reported(self, tenant_id: str, namespace: str, *, correct: bool, shadow: bool) -> None:
        """A verdict on a served hit; shadow verdicts (on answers never served) do not count."""
        if correct or shadow:
            return
        self.rejections.labels(tenant_id, "reported_wrong").inc()
        self.reported_wrong.labels(namespace).inc()
        self._outcomes[namespace][1] += 1
        self._estimate(namespace)

    def _estimate(self, namespace: str) -> None:
        served, wrong = self._outcomes[namespace]
        if served:
            self.wrong_rate.labels(namespace).set(min(1.0, wrong / served))

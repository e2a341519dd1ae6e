"""The router's Prometheus figures: what requests cost, what the baseline would have cost, and
why the cascade escalated.

Money is counted in USD (Prometheus's base-unit convention) from the same nano-USD figures the
response's cost table holds, so a scrape adds up to the responses. What a request saved is
`baseline - cost`. A counter cannot go down, and an escalated request can cost more than its
baseline, so cost avoided is two counters: `cost_avoided` (what requests that came in under
their baseline saved) and `cost_overrun` (what the others cost beyond it); avoided minus overrun
is baseline minus cost, exactly.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter

from services.router.model import ChatRequest, RouteResult, StageLine
from services.router.policy import TierSpec
from services.router.usage_rows import AUDIT_STAGE

_NANO = 1e-9
# Labels of a request's money: who asked, and which model, tier and region answered it.
_ANSWER_LABELS = ("tenant", "model", "tier", "region")


class RouterMetrics:
    """Counters the pipeline and the cascade report to, once per request and per escalation."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._children: dict[tuple[Counter, tuple[str, ...]], Counter] = {}
        self.requests = Counter(
            "sluice_router_requests",
            "Requests answered, by tenant, model class and what served them (cache or tier).",
            ("tenant", "model_class", "served_by"),
            registry=registry,
        )
        self.cost = Counter(
            "sluice_router_cost_usd",
            "What answered requests cost, every stage included, by the model, tier and region "
            "that answered (a cache hit is tier 0); a request no tier answered is counted with "
            "empty model, tier and region, for what its attempts cost.",
            _ANSWER_LABELS,
            registry=registry,
        )
        self.baseline = Counter(
            "sluice_router_baseline_cost_usd",
            "What the tenant's baseline model would have charged for the same requests; "
            "cost avoided is this minus sluice_router_cost_usd.",
            _ANSWER_LABELS,
            registry=registry,
        )
        self.cost_avoided = Counter(
            "sluice_router_cost_avoided_usd",
            "What answered requests saved against the baseline model, counting the requests "
            "that cost less than it; minus sluice_router_cost_overrun_usd, it is baseline minus "
            "cost.",
            _ANSWER_LABELS,
            registry=registry,
        )
        self.cost_overrun = Counter(
            "sluice_router_cost_overrun_usd",
            "What answered requests cost beyond the baseline model's price, counting the "
            "requests that cost more than it (every tier before the last one failed its gates).",
            _ANSWER_LABELS,
            registry=registry,
        )
        self.stage_cost = Counter(
            "sluice_router_stage_cost_usd",
            "Cost by the stage that spent it (tier attempts, rejected ones too, judge calls, "
            "compressor summaries, and cache_audit: the calls that audit served cache hits, "
            "billed to the tenant but not part of any request), with the stage's own model, "
            "tier and region.",
            ("tenant", "stage", "model", "tier", "region"),
            registry=registry,
        )
        self.escalations = Counter(
            "sluice_router_escalations",
            "Tiers the cascade left for the next one, by model class, tier and the gate that "
            "failed (latency_budget: no answer in time; unavailable: no region answered).",
            ("model_class", "tier", "gate"),
            registry=registry,
        )

    def served(self, request: ChatRequest, result: RouteResult) -> None:
        """Counts one answered request's money, from the cost table it is answered with."""
        tenant = request.tenant.tenant_id
        answer = (tenant, result.model, str(result.tier), result.region)
        served_by = "cache" if result.cache_hit else "tier"
        self._child(self.requests, (tenant, request.model_class.name, served_by)).inc()
        self._child(self.cost, answer).inc(result.total_cost_nano_usd * _NANO)
        self._child(self.baseline, answer).inc(result.baseline_cost_nano_usd * _NANO)
        avoided = result.cost_avoided_nano_usd
        if avoided >= 0:
            self._child(self.cost_avoided, answer).inc(avoided * _NANO)
        else:
            self._child(self.cost_overrun, answer).inc(-avoided * _NANO)
        self._count_stages(tenant, result.lines)

    def _count_stages(self, tenant: str, lines: Iterable[StageLine], stage: str = "") -> None:
        """Each costed line under its own stage, or under `stage` when given."""
        for line in lines:
            if line.cost_nano_usd:
                labels = (
                    tenant,
                    stage or line.stage.value,
                    line.model,
                    str(line.tier),
                    line.region,
                )
                self._child(self.stage_cost, labels).inc(line.cost_nano_usd * _NANO)

    def _child(self, counter: Counter, labels: tuple[str, ...]) -> Counter:
        """counter.labels(*labels), kept: prometheus_client validates and locks on every
        labels() call, the dearest part of counting an exact hit. As many are kept as the
        registry itself holds series, and each is made only when first counted, as before."""
        child = self._children.get((counter, labels))
        if child is None:
            child = self._children[(counter, labels)] = counter.labels(*labels)
        return child

    def unanswered(self, request: ChatRequest, spent_nano_usd: int) -> None:
        """Counts what a request that got no answer (no tier reached, cancelled) still cost."""
        if spent_nano_usd:
            self.cost.labels(request.tenant.tenant_id, "", "", "").inc(spent_nano_usd * _NANO)

    def audited(self, request: ChatRequest, lines: Iterable[StageLine], unanswered: int) -> None:
        """Counts what a cache audit's calls cost (`lines` of its fresh answer, or `unanswered`
        nano-USD spent when no tier answered) under stage cache_audit: the audit is billed to
        the tenant, so the stage costs must hold it, though it is no request of theirs."""
        tenant = request.tenant.tenant_id
        self._count_stages(tenant, lines, AUDIT_STAGE)
        if unanswered:
            stage = (tenant, AUDIT_STAGE, "", "", "")
            self._child(self.stage_cost, stage).inc(unanswered * _NANO)

    def escalated(self, request: ChatRequest, tier: TierSpec, gate: str) -> None:
        self.escalations.labels(request.model_class.name, str(tier.index), gate).inc()

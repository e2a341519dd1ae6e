"""The semantic cache learns from real traffic: gate re-checks of hits and sampled audits.

Three sources of verdicts feed the cache's ReportHit (which removes wrong entries and calibrates
the namespace's verification threshold):

- **Gate re-check.** Every hit's answer goes through the rule gates of the class's first tier
  (those that need no model call). A hit that fails one is served as a miss; a semantic one is
  reported WRONG.
- **Shadow check.** On a miss, the cache names the closest entry whose score fell short of
  its bar; once the cascade has answered, that entry's answer is compared with the fresh one and
  the verdict reported as a shadow (calibration only). It costs no model call, and it is the
  one source of evidence below a namespace's bar, so a clean namespace can lower it.
- **Sampled audit.** A tenant's `cache: {audit_rate}` share of semantic hits is asked again
  through the tier cascade, in the background, after the caller has the cached answer. The
  fresh answer is compared with the served one (audit_compare.py) and the verdict reported.
  The audit's model calls are billed to the tenant like any other call.

Reports and audits run in the background on bounded runners (background.py); a cache that
cannot take a report costs the report, never the request.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace

from opentelemetry import trace
from prometheus_client import CollectorRegistry

from services.router.audit_compare import Comparison, HitVerdict, compare
from services.router.background import BackgroundJobs
from services.router.cascade import Cascade, CascadeOutcome, NoTierAnswered
from services.router.gates import Verdict
from services.router.metrics import RouterMetrics
from services.router.model import (
    CachedAnswer,
    CacheMode,
    ChatRequest,
    RejectedCandidate,
    StageUnavailable,
    TierAnswer,
)
from services.router.policy import TenantPolicy
from services.router.ports import CachePort
from services.router.spending import Reservation, Spending
from services.router.tier_gates import rule_check
from shared import telemetry as attrs
from shared.errors import BudgetExhausted, SluiceError

LOG = logging.getLogger(__name__)

# An audit runs after its request has been answered, so the request's deadline no longer
# applies; it gets its own, long enough for a whole cascade.
AUDIT_DEADLINE_S = 60.0
# A report is one small write; the cache client caps it further at its own timeout.
REPORT_DEADLINE_S = 10.0
# Span attributes of the audit span (the router's own, like tier_gates.py's).
AUDIT_VERDICT = "sluice.cache.audit.verdict"
AUDIT_REASON = "sluice.cache.audit.reason"
UNDECIDED = "undecided"


def recheck(request: ChatRequest, hit: CachedAnswer) -> Verdict:
    """The cached answer through the first tier's rule gates (finish_reason, truncation,
    refusal, min_length, format, json, and the tool-call gate on every choice's calls); the
    gates that need a model call are left out."""
    first = request.model_class.tiers[0]
    return rule_check(request, first.gates, hit.content, hit.finish, hit.choices)


class AuditSampler:
    """Draws which semantic hits are audited, at each tenant's `cache_audit_rate`."""

    def __init__(self, draw: Callable[[], float] | None = None) -> None:
        # A uniform draw in [0, 1); injected (or seeded) so tests are deterministic.
        self._draw = draw or random.Random().random

    def sample(self, tenant: TenantPolicy) -> bool:
        rate = tenant.cache_audit_rate
        return rate > 0 and (rate >= 1 or self._draw() < rate)


class CacheAudit:
    def __init__(
        self,
        cache: CachePort,
        cascade: Cascade,
        tracer: trace.Tracer,
        spending: Spending | None = None,
        sampler: AuditSampler | None = None,
        clock: Callable[[], float] = time.monotonic,
        reports: BackgroundJobs | None = None,
        audits: BackgroundJobs | None = None,
        metrics: RouterMetrics | None = None,
    ) -> None:
        self._cache = cache
        self._cascade = cascade
        self._tracer = tracer
        self._spending = spending
        self._metrics = metrics or RouterMetrics(CollectorRegistry())
        self._sampler = sampler or AuditSampler()
        self._clock = clock
        # Two runners, so a burst of (slow, billed) audits never crowds out the quick reports.
        self.reports = reports or BackgroundJobs("cache hit report", 8, 256)
        self.audits = audits or BackgroundJobs("cache audit", 2, 32)
        self.reported = 0
        self.report_failures = 0
        self.audit_failures = 0
        self.verdicts: dict[str, int] = {HitVerdict.RIGHT: 0, HitVerdict.WRONG: 0, UNDECIDED: 0}
        self.shadow_verdicts: dict[str, int] = dict.fromkeys(self.verdicts, 0)

    def report_wrong(self, request: ChatRequest, hit: CachedAnswer) -> None:
        """Reports a served hit wrong in the background (a semantic hit that failed a gate)."""
        self.reports.submit(lambda: self.report(request, hit, HitVerdict.WRONG))

    def shadow(self, request: ChatRequest, rejected: RejectedCandidate, fresh: TierAnswer) -> bool:
        """Compares a miss's nearest rejected candidate with the fresh answer and reports a
        decided verdict (shadow) in the background; True when a report was submitted."""
        if not request.tenant.cache_shadow_checks:
            return False
        found = compare(rejected.content, fresh.content, request.response_format)
        if found.verdict is None:
            self.shadow_verdicts[UNDECIDED] += 1
            return False
        verdict = found.verdict
        self.shadow_verdicts[verdict] += 1
        return self.reports.submit(
            lambda: self._send(request, rejected.entry_id, verdict, shadow=True)
        )

    def consider(self, request: ChatRequest, hit: CachedAnswer) -> bool:
        """Starts a background audit of a served semantic hit when it is sampled; True if so."""
        if hit.kind != "semantic" or not self._sampler.sample(request.tenant):
            return False
        if request.downgrade_reason or self._budget_spent(request.tenant):
            # A tenant whose budget is spent is not billed for checking the cache's work.
            return False
        return self.audits.submit(lambda: self.audit(request, hit))

    def _budget_spent(self, tenant: TenantPolicy) -> bool:
        if self._spending is None:
            return False
        try:
            return self._spending.precheck(tenant) is not None
        except BudgetExhausted:
            return True

    async def audit(self, request: ChatRequest, hit: CachedAnswer) -> Comparison | None:
        """Asks the cascade again (no cache, no store), bills it, compares and reports; None
        when the cascade could not answer or the tenant's budget has no room for it."""
        reservation = await self._reserve(request)
        if reservation is None:
            return None
        try:
            found = await self._audited(reservation, hit)
        finally:
            # Settled once, on every path: what the audit spent, or nothing if it was cut short
            # before it spent anything (its reservation is released either way).
            await self._settle(reservation, 0)
        if found is not None and found.verdict is not None:
            await self.report(request, hit, found.verdict)
        return found

    async def _reserve(self, request: ChatRequest) -> Reservation | None:
        if self._spending is None:
            return Reservation(request, "", 0, held=False)
        try:
            # Billed, but not a request of the tenant's; never downgraded (an audit on the
            # cheapest tier would check nothing).
            return await self._spending.reserve(
                request, counts_as_request=False, may_downgrade=False
            )
        except BudgetExhausted as error:
            self.audit_failures += 1
            LOG.info("cache audit skipped: %s", error)
            return None

    async def _settle(self, reservation: Reservation, cost_nano_usd: int) -> None:
        if self._spending is not None:
            await self._spending.settle(reservation, cost_nano_usd)

    async def _audited(self, reservation: Reservation, hit: CachedAnswer) -> Comparison | None:
        request = reservation.request
        with self._tracer.start_as_current_span("audit") as span:
            span.set_attributes(
                {
                    attrs.STAGE: "audit",
                    attrs.TENANT: request.tenant.tenant_id,
                    attrs.CACHE_SIMILARITY: hit.similarity,
                }
            )
            outcome = await self._fresh(reservation, span)
            if outcome is None:
                return None
            cost = sum(line.cost_nano_usd for line in outcome.lines)
            await self._settle(reservation, cost)
            self._metrics.audited(request, outcome.lines, 0)
            found = compare(hit.content, outcome.answer.content, request.response_format)
            verdict = found.verdict.value if found.verdict is not None else UNDECIDED
            self.verdicts[verdict] += 1
            span.set_attributes(
                {
                    AUDIT_VERDICT: verdict,
                    AUDIT_REASON: found.reason,
                    attrs.OPENINFERENCE_SPAN_KIND: attrs.SPAN_KIND_CHAIN,
                    attrs.COST_USD: attrs.usd(cost),
                    attrs.TIER: outcome.tier.index,
                    attrs.GEN_AI_REQUEST_MODEL: outcome.answer.model,
                }
            )
        return found

    async def _fresh(self, reservation: Reservation, span: trace.Span) -> CascadeOutcome | None:
        request = reservation.request
        # The cascade alone never touches the cache: nothing is looked up nor stored.
        fresh = replace(request, cache_mode=CacheMode.BYPASS)
        deadline = self._clock() + AUDIT_DEADLINE_S
        outcome: CascadeOutcome | None = None
        try:
            # Read to the end, so the cascade closes its learning session before we go on.
            async for event in self._cascade.run(fresh, request.turns, deadline, stream=False):
                if isinstance(event, CascadeOutcome):
                    outcome = event
        except SluiceError as error:
            # No tier answered (or the cost cap left none to try): no verdict to give, but
            # what the failed attempts cost is billed like the audit's answers would be.
            if isinstance(error, NoTierAnswered):
                await self._settle(reservation, error.spent_nano_usd)
                self._metrics.audited(request, (), error.spent_nano_usd)
            self.audit_failures += 1
            span.set_attributes({AUDIT_VERDICT: UNDECIDED, AUDIT_REASON: str(error)})
            LOG.warning("cache audit got no fresh answer: %s", error)
        return outcome

    async def report(self, request: ChatRequest, hit: CachedAnswer, verdict: HitVerdict) -> None:
        """Sends the verdict on a served hit to the cache; a failure is counted and logged,
        never raised."""
        await self._send(request, hit.entry_id, verdict, shadow=False)

    async def _send(
        self, request: ChatRequest, entry_id: str, verdict: HitVerdict, *, shadow: bool
    ) -> None:
        try:
            await self._cache.report_hit(
                request, entry_id, verdict, self._clock() + REPORT_DEADLINE_S, shadow=shadow
            )
        except (StageUnavailable, SluiceError) as error:
            # NOT_FOUND lands here too: the entry expired, or another report removed it first.
            self.report_failures += 1
            LOG.warning("cache hit report failed: %s", getattr(error, "reason", error))
        else:
            self.reported += 1

    async def drain(self, timeout_s: float | None = None) -> None:
        """Waits for the pending audits, then the reports (audits end with a report)."""
        started = time.monotonic()
        await self.audits.drain(timeout_s)
        left = None if timeout_s is None else max(0.0, timeout_s - (time.monotonic() - started))
        await self.reports.drain(left)

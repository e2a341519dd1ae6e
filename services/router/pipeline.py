"""The request path of Complete: cache, compression, the tier cascade, then the cache again.

Optional stages degrade: when the cache or the compressor cannot be reached the request goes on
without it, and the stage's line in the cost table says it was skipped and why.

The cache has one owner (cache_stage.py), called once before the cascade (lookup, and the gate
re-check of a hit) and once after it (audit of a served hit, or store and shadow check of a
fresh answer); its reports, audits and stores run in the background.

Money has one owner (spending.py): a hit costs nothing, and a miss reserves its worst case
before compression and the cascade and settles its actual cost once after, whatever happens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import cast

from opentelemetry import trace
from prometheus_client import CollectorRegistry

from services.router.budgets import BudgetLedger
from services.router.cache_audit import CacheAudit
from services.router.cache_stage import CacheStage
from services.router.cascade import Cascade, CascadeOutcome, NoTierAnswered, PromptCost
from services.router.exact_local import LocalCopy
from services.router.metrics import RouterMetrics
from services.router.model import (
    CachedAnswer,
    CacheLookup,
    ChatRequest,
    Outcome,
    RouteResult,
    StageLine,
    StageName,
    StageUnavailable,
    TierDelta,
)
from services.router.ports import CachePort, CompressorPort
from services.router.spending import Reservation, Spending
from shared import telemetry as attrs
from shared.chat import ChoiceDelta, ToolCallDelta, Turn
from shared.errors import SluiceError
from shared.pricing import PriceCatalogue, TokenUsage
from shared.tokens import TokenCounter

LOG = logging.getLogger(__name__)


class Pipeline:
    def __init__(
        self,
        cache: CachePort,
        compressor: CompressorPort,
        cascade: Cascade,
        catalogue: PriceCatalogue,
        tokens: TokenCounter,
        ledger: BudgetLedger | None = None,
        clock: Callable[[], float] = time.monotonic,
        cache_stage: CacheStage | None = None,
        metrics: RouterMetrics | None = None,
        spending: Spending | None = None,
    ) -> None:
        """`cache_stage`, when given, replaces the default stage over `cache` (whose audits
        are billed through this pipeline's spending). `spending`, when given, replaces the
        default over `ledger` (the server's also writes the usage record)."""
        self._compressor = compressor
        self._cascade = cascade
        self._catalogue = catalogue
        self._tokens = tokens
        self._spending = spending or Spending(ledger, catalogue)
        self._clock = clock
        self._metrics = metrics or RouterMetrics(CollectorRegistry())
        self.cache = cache_stage or CacheStage(
            cache,
            CacheAudit(
                cache,
                cascade,
                trace.get_tracer("sluice.router"),
                self._spending,
                clock=clock,
                metrics=self._metrics,
            ),
            clock=clock,
        )

    def _baseline_cost(self, request: ChatRequest, output_tokens: int) -> int:
        """What the baseline model would have charged for the original prompt and this answer."""
        prompt_tokens = request.prompt_tokens or self._tokens.count_chat(
            t.content for t in request.turns
        )
        usage = TokenUsage(prompt_tokens, output_tokens)
        return self._catalogue.cost_nano_usd(request.tenant.baseline_model, usage)

    async def _compress(
        self, request: ChatRequest, deadline: float
    ) -> tuple[tuple[Turn, ...], StageLine]:
        started = self._clock()
        target_model = request.model_class.tiers[0].model
        try:
            result = await self._compressor.compress(request, target_model, deadline)
        except StageUnavailable as error:
            LOG.warning("compressor skipped: %s", error.reason)
            return request.turns, StageLine(StageName.COMPRESSOR, Outcome.SKIPPED, error.reason)
        elapsed = self._clock() - started
        if not result.compressed:
            # A summary paid for and then discarded (it saved too little) still cost money.
            return request.turns, StageLine(
                StageName.COMPRESSOR,
                Outcome.NOT_APPLICABLE,
                result.reason,
                cost_nano_usd=result.cost_nano_usd,
                latency_s=elapsed,
            )
        detail = f"{result.strategy}: {result.original_tokens} -> {result.compressed_tokens} tokens"
        return result.turns, StageLine(
            StageName.COMPRESSOR,
            Outcome.USED,
            detail,
            cost_nano_usd=result.cost_nano_usd,
            latency_s=elapsed,
        )

    def _cache_result(
        self, request: ChatRequest, hit: CachedAnswer, lines: list[StageLine]
    ) -> RouteResult:
        return RouteResult(
            request_id=request.request_id,
            content=hit.content,
            finish=hit.finish,
            model=hit.model,
            tier=0,
            region="",
            usage=hit.usage,
            lines=tuple(lines),
            baseline_model=request.tenant.baseline_model,
            baseline_cost_nano_usd=self._baseline_cost(request, hit.usage.output_tokens),
            cache_hit=True,
            policy_version=request.policy_version,
            choices=hit.choices,
        )

    def find_copy(self, request: ChatRequest, key: str = "") -> LocalCopy | None:
        """The router's own exact copy of a drafted request's answer (Admission.draft); `key`
        is its copy_key, when known."""
        return self.cache.local(request, key)

    def serve_copy(self, request: ChatRequest, copy: LocalCopy) -> RouteResult:
        """An admitted repeat answered from the router's copy on the spot: no hop, no await,
        nothing reserved."""
        line = self.cache.copy_line(copy, self._clock())
        span = trace.get_current_span()
        annotate_request(span, request)
        return self._served_hit(span, request, CacheLookup(copy.answer), copy.answer, line)

    def _served_hit(
        self,
        span: trace.Span,
        request: ChatRequest,
        found: CacheLookup,
        hit: CachedAnswer,
        cache_line: StageLine,
    ) -> RouteResult:
        """`found`'s `hit`, served: a hit costs nothing, so no money is reserved and none is
        charged; what it saved is recorded."""
        result = self._cache_result(request, hit, [cache_line])
        self._annotate(span, result)
        self._metrics.served(request, result)
        self._spending.served_from_cache(request, result)
        self.cache.after(request, found, None)
        return result

    async def run(
        self, request: ChatRequest, deadline: float, *, stream: bool = False
    ) -> AsyncIterator[TierDelta | RouteResult]:
        """Yields streamed deltas (when stream is set), then exactly one RouteResult."""
        span = trace.get_current_span()
        annotate_request(span, request)
        found, cache_line = await self.cache.before(request, deadline)
        if found.hit is not None:
            result = self._served_hit(span, request, found, found.hit, cache_line)
            if stream:
                for delta in hit_deltas(result):
                    yield delta
            yield result
            return
        reservation = await self._spending.reserve(request)
        if reservation.request.downgrade_reason and not request.downgrade_reason:
            span.set_attribute(attrs.BUDGET_DOWNGRADED, reservation.request.downgrade_reason)
        # Closed with this generator, so a caller that goes away settles the reservation now,
        # not whenever the abandoned generator is collected.
        answering = self._answer(reservation, found, cache_line, deadline, stream)
        async with aclosing(answering) as events:
            async for event in events:
                yield event

    async def _answer(
        self,
        reservation: Reservation,
        found: CacheLookup,
        cache_line: StageLine,
        deadline: float,
        stream: bool,
    ) -> AsyncGenerator[TierDelta | RouteResult]:
        """Compression and the cascade under a reservation, which is settled once on every path:
        with the result's cost before the result is yielded (a unary caller stops reading
        there), else with what is known to be spent."""
        request = reservation.request
        spent = 0
        # The tier whose call a cancellation would cut short; a provider bills its prompt.
        in_flight: int | None = None
        answered = False
        try:
            turns, compress_line = await self._compress(request, deadline)
            spent = compress_line.cost_nano_usd
            in_flight = request.model_class.tiers[0].index
            outcome: CascadeOutcome | None = None
            # Cascade.run is an async generator; typed as an iterator, so it is cast to be closed.
            cascade = cast(
                AsyncGenerator[TierDelta | CascadeOutcome],
                self._cascade.run(request, turns, deadline, stream=stream),
            )
            try:
                async with aclosing(cascade) as events:
                    async for event in events:
                        if isinstance(event, TierDelta):
                            in_flight = event.tier
                            yield event
                        else:
                            outcome = event
            except NoTierAnswered as error:
                # The caller gets UNAVAILABLE, but what the attempts and a summary cost is owed.
                spent += error.spent_nano_usd
                in_flight = None
                raise
            except SluiceError:
                # Refused before a call (the cost cap), or no dispatcher to call: nothing billed.
                in_flight = None
                raise
            assert outcome is not None, "the cascade always ends with an outcome"
            in_flight = None
            self.cache.after(request, found, outcome.answer)
            result = self._miss_result(request, [cache_line, compress_line], outcome)
            await self._spending.settle(reservation, result.total_cost_nano_usd, result)
            self._annotate(trace.get_current_span(), result)
            self._metrics.served(request, result)
            answered = True
            yield result
        finally:
            if in_flight is not None:
                spent += self._spending.prompt_cost(request, in_flight)
            await self._spending.settle(reservation, spent)
            if not answered:
                self._metrics.unanswered(request, spent)

    def _miss_result(
        self,
        request: ChatRequest,
        lines: list[StageLine],
        outcome: CascadeOutcome,
    ) -> RouteResult:
        lines.extend(outcome.lines)
        answer = outcome.answer
        return RouteResult(
            request_id=request.request_id,
            content=answer.content,
            finish=answer.finish,
            model=answer.model,
            tier=outcome.tier.index,
            region=answer.region,
            usage=answer.usage,
            lines=tuple(lines),
            baseline_model=request.tenant.baseline_model,
            baseline_cost_nano_usd=self._baseline_cost(request, answer.usage.output_tokens),
            cache_hit=False,
            policy_version=request.policy_version,
            choices=answer.choices,
        )

    async def drain(self, timeout_s: float | None = None) -> None:
        """Waits for the cache's background work still running; called when the router shuts
        down."""
        await self.cache.drain(timeout_s)

    @staticmethod
    def _annotate(span: trace.Span, result: RouteResult) -> None:
        span.set_attributes(
            {
                attrs.STAGE: "router",
                attrs.OPENINFERENCE_SPAN_KIND: attrs.SPAN_KIND_CHAIN,
                attrs.TIER: result.tier,
                attrs.REGION: result.region,
                attrs.GEN_AI_REQUEST_MODEL: result.model,
                attrs.GEN_AI_INPUT_TOKENS: result.usage.input_tokens,
                attrs.GEN_AI_OUTPUT_TOKENS: result.usage.output_tokens,
                attrs.COST_USD: attrs.usd(result.total_cost_nano_usd),
                attrs.COST_AVOIDED_USD: attrs.usd(result.cost_avoided_nano_usd),
                attrs.CACHE_HIT: result.cache_hit,
            }
        )


def hit_deltas(result: RouteResult) -> tuple[TierDelta, ...]:
    """A cache hit as a stream: its text alone, or each choice as one whole piece (its
    content, calls with their whole arguments, refusal and logprobs)."""
    if not result.choices:
        return (TierDelta(1, 0, result.content),)
    return tuple(
        TierDelta(
            1,
            0,
            "",
            piece=ChoiceDelta(
                choice.index,
                choice.content,
                tuple(
                    ToolCallDelta(n, call.id, call.name, call.arguments)
                    for n, call in enumerate(choice.tool_calls)
                ),
                choice.refusal,
                choice.logprobs,
            ),
        )
        for choice in result.choices
    )


def prompt_cost_estimator(catalogue: PriceCatalogue, tokens: TokenCounter) -> PromptCost:
    """Prices a prompt on a model, for calls abandoned before they reported usage and for the
    start-tier choice, which prices the same prompt on every tier and the baseline in turn.

    The count of the turns last asked about is kept, so those calls count the prompt's tokens
    once, not once per model: counting is the costly part, and it runs on the event loop. The
    turns are held, so a new tuple can never share their identity."""
    last: list[tuple[tuple[Turn, ...], int]] = []

    def estimate(model: str, turns: tuple[Turn, ...]) -> int:
        if last and last[0][0] is turns:
            prompt = last[0][1]
        else:
            prompt = tokens.count_chat(t.content for t in turns)
            last[:] = [(turns, prompt)]
        return catalogue.cost_nano_usd(model, TokenUsage(prompt, 0))

    return estimate


def annotate_request(span: trace.Span, request: ChatRequest) -> None:
    """Records who asked, under which policy, and what a shadow policy would have done."""
    span.set_attributes(
        {attrs.TENANT: request.tenant.tenant_id, attrs.POLICY_VERSION: request.policy_version}
    )
    if request.downgrade_reason:
        span.set_attribute(attrs.BUDGET_DOWNGRADED, request.downgrade_reason)
    shadow = request.shadow
    if shadow is not None:
        span.set_attributes(
            {
                attrs.SHADOW_POLICY_VERSION: shadow.policy_version,
                attrs.SHADOW_TIERS: list(shadow.tiers),
                attrs.SHADOW_DIFFERS: shadow.differs,
            }
        )
        if shadow.note:
            span.set_attribute(attrs.SHADOW_NOTE, shadow.note)


async def complete(pipeline: Pipeline, request: ChatRequest, deadline: float) -> RouteResult:
    """Runs the unary path and returns its result."""
    async for event in pipeline.run(request, deadline):
        if isinstance(event, RouteResult):
            return event
    raise AssertionError("the pipeline always ends with a result")

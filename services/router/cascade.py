"""The tier cascade: call the cheapest tier, gate its answer, escalate only on failure.

Every attempt's cost counts, rejected ones included. The last tier's answer is accepted even if
a gate fails (there is nothing better to escalate to), and the response says which gate failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

from opentelemetry import trace
from prometheus_client import CollectorRegistry

from services.router.class_start import (
    CLASS_KEY,
    CLASS_START_TIER,
    ClassStarts,
    StartDecision,
    class_key,
)
from services.router.learned import LearnedGates
from services.router.learning.runtime import RoutingSession
from services.router.metrics import RouterMetrics
from services.router.model import (
    ChatRequest,
    Outcome,
    StageLine,
    StageName,
    TierAnswer,
    TierDelta,
)
from services.router.policy import TierSpec
from services.router.ports import ModelPort
from services.router.tier_gates import TierGates, TierVerdict
from shared import telemetry as attrs
from shared.chat import ChoiceDelta, Turn
from shared.errors import BudgetExhausted, Unavailable


@dataclass(frozen=True)
class CascadeOutcome:
    answer: TierAnswer
    tier: TierSpec
    lines: tuple[StageLine, ...]


def _tier_line(tier: TierSpec, answer: TierAnswer, outcome: Outcome, detail: str) -> StageLine:
    return StageLine(
        StageName.TIER,
        outcome,
        detail,
        tier.index,
        answer.model,
        answer.region,
        answer.usage,
        answer.cost_nano_usd,
        answer.latency_s,
    )


def batcher_line(answers: list[TierAnswer]) -> StageLine:
    """Summarises how the batcher handled this request's calls."""
    for wanted in (Outcome.SKIPPED, Outcome.USED, Outcome.PASSED, Outcome.NOT_APPLICABLE):
        for answer in answers:
            if answer.batcher_outcome is wanted:
                return StageLine(StageName.BATCHER, wanted, answer.batcher_detail)
    return StageLine(StageName.BATCHER, Outcome.NOT_APPLICABLE, "no model call was made")


@dataclass(frozen=True)
class _TierStep:
    """How one tier ended: its cost-table line, and its answer unless it had none."""

    line: StageLine
    answer: TierAnswer | None
    # Billed lines the tier's gates added (the judge's call), after the tier's own line.
    extra: tuple[StageLine, ...] = ()
    # The answer passed every gate (a last tier's may be used without having passed).
    passed: bool = False
    # Why the cascade would move on from this tier: the failed gate, latency_budget or
    # unavailable; "" when its answer is used.
    failed: str = ""


def _skipped_line(tier: TierSpec, reason: str, cost_nano_usd: int) -> StageLine:
    return StageLine(
        StageName.TIER,
        Outcome.SKIPPED,
        reason,
        tier.index,
        tier.model,
        cost_nano_usd=cost_nano_usd,
    )


class TierTimedOut(Exception):
    """A tier used up its latency budget; the cascade moves on to the next tier."""


class NoTierAnswered(Unavailable):
    """No tier answered. The failed attempts may still have cost money (a provider bills the
    prompt of a call that ran past its latency budget), so that sum rides along to be billed."""

    def __init__(self, message: str, spent_nano_usd: int) -> None:
        super().__init__(message)
        self.spent_nano_usd = spent_nano_usd


PromptCost = Callable[[str, tuple[Turn, ...]], int]


def _no_cost(model: str, turns: tuple[Turn, ...]) -> int:
    return 0


START_TIER = "sluice.start_tier"
START_TIER_REASON = "sluice.start_tier.reason"


class Cascade:
    def __init__(
        self,
        models: ModelPort,
        tracer: trace.Tracer,
        prompt_cost: PromptCost = _no_cost,
        learned: LearnedGates | None = None,
        gates: TierGates | None = None,
        starts: ClassStarts | None = None,
        metrics: RouterMetrics | None = None,
    ) -> None:
        self._models = models
        self._tracer = tracer
        # Estimates what an abandoned call is billed anyway (its prompt), so it still counts.
        self._prompt_cost = prompt_cost
        # The answer scorer and start-tier predictor; None when no policy uses them.
        self._learned = learned
        self._gates = gates or TierGates()
        # Each request class's evidence of how its tiers fare, which sets where it starts.
        self._starts = starts or ClassStarts()
        self._metrics = metrics or RouterMetrics(CollectorRegistry())

    async def _attempt(
        self,
        request: ChatRequest,
        tier: TierSpec,
        turns: tuple[Turn, ...],
        deadline: float,
        attempt: int,
        stream: bool,
    ) -> AsyncIterator[TierDelta | TierAnswer]:
        budget = tier.latency_budget_s
        try:
            if not stream:
                yield await asyncio.wait_for(
                    self._models.call(request, tier, turns, deadline), budget
                )
                return
            # For a stream the budget bounds the wait for the first token.
            async with asyncio.timeout(budget) as first_token:
                async for event in self._models.stream(request, tier, turns, deadline):
                    first_token.reschedule(None)
                    if isinstance(event, str):
                        yield TierDelta(attempt, tier.index, event)
                    elif isinstance(event, ChoiceDelta):
                        yield TierDelta(attempt, tier.index, "", piece=event)
                    else:
                        yield event
        except TimeoutError:
            raise TierTimedOut(f"latency budget of {budget}s ran out; escalated") from None

    async def run(
        self, request: ChatRequest, turns: tuple[Turn, ...], deadline: float, *, stream: bool
    ) -> AsyncIterator[TierDelta | CascadeOutcome]:
        """Yields streamed deltas (when stream is set), then exactly one CascadeOutcome."""
        session = self._learned.session(request) if self._learned is not None else None
        try:
            async for event in self._run(request, turns, deadline, stream, session):
                yield event
        finally:
            if session is not None:
                # The start-tier predictor learns from every request's gate outcomes.
                session.finish()

    async def _run(
        self,
        request: ChatRequest,
        turns: tuple[Turn, ...],
        deadline: float,
        stream: bool,
        session: RoutingSession | None,
    ) -> AsyncIterator[TierDelta | CascadeOutcome]:
        lines: list[StageLine] = []
        answers: list[TierAnswer] = []
        failures: list[str] = []
        escalating: tuple[TierSpec, str] | None = None
        tiers = request.model_class.tiers
        start = await self._start(request, turns, session)
        first = start.tier if start is not None else 0
        if start is not None:
            lines.extend(_skipped_line(tier, start.reason, 0) for tier in tiers[:first])
        for attempt, tier in enumerate(tiers[first:], 1):
            spent = sum(line.cost_nano_usd for line in lines)
            if request.max_cost_nano_usd and spent >= request.max_cost_nano_usd:
                break
            if escalating is not None:
                # Counted as the next tier is entered, so a cost cap that stops here is not.
                self._metrics.escalated(request, *escalating)
            step: _TierStep | None = None
            last = tier is tiers[-1]
            tier_run = self._tier(request, tier, turns, deadline, attempt, stream, last, session)
            async for event in tier_run:
                if isinstance(event, TierDelta):
                    yield event
                else:
                    step = event
            assert step is not None, "a tier always ends with a step"
            self._learn(request, tier, step)
            escalating = (tier, step.failed) if step.failed else None
            lines.append(step.line)
            lines.extend(step.extra)
            if step.answer is None:
                failures.append(f"tier {tier.index} ({tier.model}): {step.line.detail}")
                continue
            answers.append(step.answer)
            if step.line.outcome is Outcome.USED:
                yield CascadeOutcome(step.answer, tier, (*lines, batcher_line(answers)))
                return
        yield self._fallback(request, lines, answers, failures)

    async def _start(
        self, request: ChatRequest, turns: tuple[Turn, ...], session: RoutingSession | None
    ) -> StartDecision | None:
        """Where the request enters the cascade (class_start.py): one decision from the
        class's evidence and, with `learned_start`, the per-prompt predictor's. None for a
        one-tier cascade, which has nothing to decide."""
        tiers = request.model_class.tiers
        if len(tiers) < 2:
            return None
        span = trace.get_current_span()
        by_prompt, note = None, ""
        if session is not None and request.model_class.learned_start:
            try:
                by_prompt = await session.acceptance()
            except Exception as error:  # a predictor fault must not fail the request
                note = f"predictor failed: {error}; "
        try:
            costs = [float(self._prompt_cost(tier.model, turns)) for tier in tiers]
            baseline = float(self._prompt_cost(request.tenant.baseline_model, turns))
        except Exception as error:  # an unpriced model leaves the cascade as it is
            decision = StartDecision(0, class_key(request), f"{note}no prompt cost: {error}")
        else:
            decision = self._starts.decide(request, costs, baseline, by_prompt)
        reason = f"{note}start-tier predictor chose tier {tiers[decision.tier].index}: "
        reason += decision.reason
        decision = replace(decision, reason=reason)
        span.set_attributes(
            {
                START_TIER: tiers[decision.tier].index,
                START_TIER_REASON: reason,
                CLASS_START_TIER: tiers[decision.tier].index,
                CLASS_KEY: decision.key,
            }
        )
        return decision

    def _learn(self, request: ChatRequest, tier: TierSpec, step: _TierStep) -> None:
        """Tells the class's evidence how a tier's answer fared. A tier that timed out or was
        down says nothing about the class's answers."""
        if step.answer is not None and len(request.model_class.tiers) > 1:
            self._starts.record(request, tier.index - 1, step.passed)

    async def _tier(
        self,
        request: ChatRequest,
        tier: TierSpec,
        turns: tuple[Turn, ...],
        deadline: float,
        attempt: int,
        stream: bool,
        last: bool,
        session: RoutingSession | None = None,
    ) -> AsyncIterator[TierDelta | _TierStep]:
        """Runs one tier under its own span: deltas, then the tier's line and answer."""
        with self._tracer.start_as_current_span(f"tier {tier.index} {tier.model}") as span:
            span.set_attributes(
                {
                    attrs.STAGE: "tier",
                    attrs.TIER: tier.index,
                    attrs.GEN_AI_REQUEST_MODEL: tier.model,
                    attrs.OPENINFERENCE_SPAN_KIND: attrs.SPAN_KIND_CHAIN,
                    attrs.LLM_MODEL_NAME: tier.model,
                    attrs.POLICY_VERSION: request.policy_version,
                }
            )
            answer: TierAnswer | None = None
            try:
                async for event in self._attempt(request, tier, turns, deadline, attempt, stream):
                    if isinstance(event, TierDelta):
                        yield event
                    else:
                        answer = event
            except TierTimedOut as error:
                span.set_attribute(attrs.LATENCY_ESCALATED, True)
                cost = self._prompt_cost(tier.model, turns)
                yield _TierStep(
                    _skipped_line(tier, str(error), cost), None, failed="latency_budget"
                )
                return
            except Unavailable as error:
                # This tier's model is down in every region; a higher tier may still answer.
                span.set_attribute(attrs.STAGE_SKIPPED, True)
                yield _TierStep(_skipped_line(tier, str(error), 0), None, failed="unavailable")
                return
            assert answer is not None, "a model port must end with a TierAnswer"
            checked = await self._gates.check(request, tier, answer, session, deadline, span, last)
            verdict = checked.verdict
            yield _TierStep(
                self._judge(request, tier, answer, span, last, checked),
                answer,
                checked.lines,
                verdict.passed,
                "" if verdict.passed else verdict.gate,
            )

    @staticmethod
    def _judge(
        request: ChatRequest,
        tier: TierSpec,
        answer: TierAnswer,
        span: trace.Span,
        last: bool,
        checked: TierVerdict,
    ) -> StageLine:
        """Turns the gates' verdict into the tier's line: USED when it passes (or nothing is
        left to escalate to), REJECTED otherwise."""
        verdict = checked.verdict
        notes = "".join(f"; {note}" for note in checked.notes)
        span.set_attributes(
            {
                attrs.REGION: answer.region,
                attrs.COST_USD: attrs.usd(answer.cost_nano_usd),
                attrs.GEN_AI_INPUT_TOKENS: answer.usage.input_tokens,
                attrs.GEN_AI_OUTPUT_TOKENS: answer.usage.output_tokens,
                **attrs.llm_usage(answer.usage.input_tokens, answer.usage.output_tokens),
                attrs.LLM_COST_TOTAL: attrs.usd(answer.cost_nano_usd),
            }
        )
        if not verdict.passed:
            span.set_attribute(attrs.GATE_FAILED, verdict.gate)
            if not last:
                return _tier_line(
                    tier,
                    answer,
                    Outcome.REJECTED,
                    f"gate {verdict.gate}: {verdict.reason}{notes}",
                )
        detail = (
            "accepted"
            if verdict.passed
            else (
                f"accepted as the last tier although gate {verdict.gate} failed: {verdict.reason}"
            )
        )
        detail += notes
        if request.downgrade_reason:
            detail = f"{detail}; budget: {request.downgrade_reason}"
        return _tier_line(tier, answer, Outcome.USED, detail)

    def _fallback(
        self,
        request: ChatRequest,
        lines: list[StageLine],
        answers: list[TierAnswer],
        failures: list[str],
    ) -> CascadeOutcome:
        """Ends a cascade cut short by the cost cap or by unavailable tiers."""
        if not answers and not failures:
            raise BudgetExhausted(
                f"max_cost {request.max_cost_nano_usd} nano-USD is exhausted before any tier ran"
            )
        if not answers:
            raise NoTierAnswered(
                "no tier could be reached: " + "; ".join(failures),
                sum(line.cost_nano_usd for line in lines),
            )
        # Escalation stopped (cost cap, or no higher tier answered): accept the last answer
        # received, and say why.
        index = max(
            i
            for i, line in enumerate(lines)
            if line.stage is StageName.TIER and line.outcome is Outcome.REJECTED
        )
        rejected = lines[index]
        spent = sum(line.cost_nano_usd for line in lines)
        capped = bool(request.max_cost_nano_usd) and spent >= request.max_cost_nano_usd
        why = "max_cost was reached" if capped else "no higher tier answered"
        lines[index] = replace(
            rejected, outcome=Outcome.USED, detail=f"{rejected.detail}; accepted because {why}"
        )
        tier = next(t for t in request.model_class.tiers if t.index == rejected.tier)
        return CascadeOutcome(answers[-1], tier, (*lines, batcher_line(answers)))

"""The tier cascade: call the cheapest tier, gate its answer, escalate only on failure.

Every attempt's cost counts, rejected ones included. The last tier's answer is accepted even if
a gate fails (there is nothing better to escalate to), and the response says which gate failed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from opentelemetry import trace

from services.router.gates import GateInput, evaluate
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
from shared import telemetry as attrs
from shared.chat import Turn
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


class Cascade:
    def __init__(self, models: ModelPort, tracer: trace.Tracer) -> None:
        self._models = models
        self._tracer = tracer

    async def _attempt(
        self,
        request: ChatRequest,
        tier: TierSpec,
        turns: tuple[Turn, ...],
        deadline: float,
        attempt: int,
        stream: bool,
    ) -> AsyncIterator[TierDelta | TierAnswer]:
        if not stream:
            yield await self._models.call(request, tier, turns, deadline)
            return
        async for event in self._models.stream(request, tier, turns, deadline):
            yield TierDelta(attempt, tier.index, event) if isinstance(event, str) else event

    async def run(
        self, request: ChatRequest, turns: tuple[Turn, ...], deadline: float, *, stream: bool
    ) -> AsyncIterator[TierDelta | CascadeOutcome]:
        """Yields streamed deltas (when stream is set), then exactly one CascadeOutcome."""
        lines: list[StageLine] = []
        answers: list[TierAnswer] = []
        failures: list[str] = []
        tiers = request.model_class.tiers
        for attempt, tier in enumerate(tiers, 1):
            spent = sum(a.cost_nano_usd for a in answers)
            if request.max_cost_nano_usd and spent >= request.max_cost_nano_usd:
                break
            with self._tracer.start_as_current_span(f"tier {tier.index} {tier.model}") as span:
                span.set_attributes(
                    {
                        attrs.STAGE: "tier",
                        attrs.TIER: tier.index,
                        attrs.GEN_AI_REQUEST_MODEL: tier.model,
                        attrs.POLICY_VERSION: request.policy_version,
                    }
                )
                answer: TierAnswer | None = None
                try:
                    async for event in self._attempt(
                        request, tier, turns, deadline, attempt, stream
                    ):
                        if isinstance(event, TierDelta):
                            yield event
                        else:
                            answer = event
                except Unavailable as error:
                    # This tier's model is down in every region; a higher tier may still answer.
                    failures.append(f"tier {tier.index} ({tier.model}): {error}")
                    lines.append(
                        StageLine(
                            StageName.TIER, Outcome.SKIPPED, str(error), tier.index, tier.model
                        )
                    )
                    span.set_attribute(attrs.STAGE_SKIPPED, True)
                    continue
                assert answer is not None, "a model port must end with a TierAnswer"
                answers.append(answer)
                verdict = evaluate(
                    tier.gates,
                    GateInput(answer.content, answer.finish, request.response_format),
                    request.model_class.gate_settings,
                )
                span.set_attributes(
                    {
                        attrs.REGION: answer.region,
                        attrs.COST_USD: attrs.usd(answer.cost_nano_usd),
                        attrs.GEN_AI_INPUT_TOKENS: answer.usage.input_tokens,
                        attrs.GEN_AI_OUTPUT_TOKENS: answer.usage.output_tokens,
                    }
                )
                if not verdict.passed:
                    span.set_attribute(attrs.GATE_FAILED, verdict.gate)
                if verdict.passed or attempt == len(tiers):
                    detail = (
                        "accepted"
                        if verdict.passed
                        else (
                            f"accepted as the last tier although gate {verdict.gate} failed: "
                            f"{verdict.reason}"
                        )
                    )
                    if request.downgrade_reason:
                        detail = f"{detail}; budget: {request.downgrade_reason}"
                    lines.append(_tier_line(tier, answer, Outcome.USED, detail))
                    yield CascadeOutcome(answer, tier, (*lines, batcher_line(answers)))
                    return
                lines.append(
                    _tier_line(
                        tier, answer, Outcome.REJECTED, f"gate {verdict.gate}: {verdict.reason}"
                    )
                )
        yield self._fallback(request, lines, answers, failures)

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
            raise Unavailable("no tier could be reached: " + "; ".join(failures))
        # The cost cap stopped escalation: accept the last answer received, and say why.
        index = max(i for i, line in enumerate(lines) if line.outcome is Outcome.REJECTED)
        rejected = lines[index]
        lines[index] = replace(
            rejected,
            outcome=Outcome.USED,
            detail=f"{rejected.detail}; accepted because max_cost was reached",
        )
        tier = next(t for t in request.model_class.tiers if t.index == rejected.tier)
        return CascadeOutcome(answers[-1], tier, (*lines, batcher_line(answers)))

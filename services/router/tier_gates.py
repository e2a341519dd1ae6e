"""One tier's quality check: the rule gates, then the gates that need more than the text.

Rule gates (gates.py) are cheap and run first; an answer they reject is not worth scoring.
Then, in the order the policy lists them: `logprob` (the provider's token logprobs), `scorer`
(the learned answer scorer, off the event loop) and `judge` (a cheap LLM, billed). A learned
gate that cannot judge (no logprobs, a scoring error, a judge that failed or gave no verdict)
is skipped with the reason; it never fails the answer and never crashes the request.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

from opentelemetry import trace

from services.router.answer_gates import agreement, answer_score, signals
from services.router.code_gate import CodeLimits, CodeRunner, network_isolation
from services.router.gates import (
    PASS,
    GateInput,
    LogprobSummary,
    Verdict,
    evaluate,
    logprob_gate,
)
from services.router.judge import LlmJudge
from services.router.learned import prompt_of
from services.router.learning.runtime import RoutingSession
from services.router.model import ChatRequest, StageLine, TierAnswer
from services.router.policy import TierSpec
from services.router.tool_gate import GATE as TOOL_CALL_GATE
from shared import telemetry as attrs
from shared.chat import Choice, Finish

LOG = logging.getLogger(__name__)

# Span attributes of the learned gates (the router's own; shared/telemetry holds the
# cross-service names).
SCORER_SCORE = "sluice.gate.scorer.score"
SCORER_MIN_SCORE = "sluice.gate.scorer.min_score"
LOGPROB_MEAN = "sluice.gate.logprob.mean"
LOGPROB_MIN = "sluice.gate.logprob.min"
JUDGE_VERDICT = "sluice.gate.judge.verdict"
JUDGE_COST_USD = "sluice.gate.judge.cost.usd"
ANSWER_SCORE = "sluice.gate.answer_score"
AGREEMENT = "sluice.gate.self_consistency.agreement"
# Gates that read the prompt or every choice (answer_gates.py, code_gate.py).
_ANSWER_GATES = frozenset({"self_consistency", "answer_score", "code_tests"})
GATES_SKIPPED = "sluice.gate.skipped"
# Why a tier's tool calls failed the tool-call gate: the failure's kind, e.g. "schema".
TOOL_CALL_REASON = "sluice.gate.tool_call.reason"


@dataclass(frozen=True)
class TierVerdict:
    verdict: Verdict
    # What the learned gates found, for the cost-table line ("scorer 0.812 >= 0.650").
    notes: tuple[str, ...] = ()
    # Extra billed lines, e.g. the judge's call.
    lines: tuple[StageLine, ...] = ()


class TierGates:
    def __init__(self, judge: LlmJudge | None = None, code: CodeRunner | None = None) -> None:
        self._judge = judge
        # Built on first use: a policy listing `code_tests` is the opt-in, and the probe for
        # network namespaces costs a subprocess that other policies need not pay.
        self._code = code

    async def check(
        self,
        request: ChatRequest,
        tier: TierSpec,
        answer: TierAnswer,
        session: RoutingSession | None,
        deadline: float,
        span: trace.Span,
        last: bool = False,
    ) -> TierVerdict:
        ruled = rule_check(
            request, tier.gates, answer.content, answer.finish, answer.choices, answer.logprobs
        )
        if not ruled.passed and ruled.gate == TOOL_CALL_GATE:
            span.set_attribute(TOOL_CALL_REASON, tool_call_kind(ruled))
        run = _Run(request, tier, answer, session, span)
        calls_only = bool(answer.tool_calls) and not answer.content.strip()
        if ruled.passed:
            for name in tier.gates:
                if calls_only and name in ("scorer", "judge", *_ANSWER_GATES):
                    # Nothing to read: the tool-call gate already checked the calls themselves.
                    run.add(Verdict(True, name, "the answer is tool calls only", skipped=True))
                elif name == "logprob":
                    run.add(_logprob(tier, answer, span))
                elif name == "scorer":
                    run.add(await run.score())
                elif name == "judge" and last:
                    # Its verdict could change nothing, so its call is not worth paying for.
                    run.add(
                        Verdict(True, "judge", "the last tier is accepted anyway", skipped=True)
                    )
                elif name == "judge":
                    run.add(await self._judge_gate(run, deadline))
                elif name in _ANSWER_GATES:
                    run.add(await self._answer_gate(run, name))
                if run.failed is not None:
                    break
        else:
            run.failed = ruled
        await run.finish()
        return TierVerdict(run.failed or Verdict(True), tuple(run.notes), tuple(run.lines))

    async def _answer_gate(self, run: _Run, name: str) -> Verdict:
        settings = run.request.model_class.gate_settings.answer
        answer = run.answer
        if name == "self_consistency":
            share = agreement([c.content for c in answer.choices], settings)
            if share is None:
                return Verdict(True, name, "one choice, nothing to compare", skipped=True)
            run.span.set_attribute(AGREEMENT, share)
            passed = share >= settings.min_agreement
            return Verdict(passed, name, f"final answers agree {share:.2f}")
        if name == "answer_score":
            if not settings.weights:
                return Verdict(True, name, "no answer_weights in the policy", skipped=True)
            score = answer_score(
                signals(prompt_of(run.request), answer.content, settings), settings
            )
            run.span.set_attribute(ANSWER_SCORE, score)
            passed = score >= settings.min_answer_score
            sign = ">=" if passed else "<"
            return Verdict(
                passed, name, f"answer_score {score:.3f} {sign} {settings.min_answer_score}"
            )
        if self._code is None:
            isolation = await asyncio.to_thread(network_isolation)
            self._code = CodeRunner(CodeLimits(), isolation)
        result = await self._code.check(prompt_of(run.request), answer.content)
        return Verdict(result.passed, name, result.reason)

    async def _judge_gate(self, run: _Run, deadline: float) -> Verdict:
        if self._judge is None:
            return Verdict(True, "judge", "no judge is configured", skipped=True)
        question = prompt_of(run.request)
        result = await self._judge.check(
            run.request, run.tier, question, run.answer.content, deadline
        )
        run.lines.append(result.line)
        run.span.set_attribute(JUDGE_COST_USD, attrs.usd(result.line.cost_nano_usd))
        if result.passed is None:
            return Verdict(True, "judge", result.reason, skipped=True)
        run.span.set_attribute(JUDGE_VERDICT, "yes" if result.passed else "no")
        return Verdict(result.passed, "judge", result.reason)


def rule_check(
    request: ChatRequest,
    gate_names: tuple[str, ...],
    content: str,
    finish: Finish,
    choices: tuple[Choice, ...] = (),
    logprobs: LogprobSummary | None = None,
) -> Verdict:
    """The rule gates (gates.evaluate) on an answer, a tier's or a cached one.

    With n > 1 the caller is served every choice, so every choice must pass: the first that
    fails fails the answer, and the reason names it. The tool-call gate checks each choice's
    calls against the request's tools; the logprob summary (choice 0's) goes with choice 0.
    An answer cut at the caller's own max_tokens is what the caller asked for, so the gates
    that would hold the cut against it let it pass (GateInput.cut_as_asked).
    """
    settings = request.model_class.gate_settings
    every = choices or (Choice(0, content, finish),)
    for choice in every:
        verdict = evaluate(
            gate_names,
            GateInput(
                choice.content,
                choice.finish,
                request.response_format,
                logprobs if choice.index == 0 else None,
                choice.tool_calls,
                request.tools,
                caller_max_tokens=request.sampling.max_tokens > 0,
            ),
            settings,
        )
        if not verdict.passed:
            if len(every) > 1:
                # Appended, not prefixed: the reason's first word is the failure's kind.
                verdict = replace(verdict, reason=f"{verdict.reason} (choice {choice.index})")
            return verdict
    return PASS


def tool_call_kind(verdict: Verdict) -> str:
    """The kind of a tool-call gate failure (`unknown_function`, `schema`, ...): its reason's
    first word, which tool_gate.ToolCallProblem puts there for counting."""
    return verdict.reason.split(":", 1)[0]


def _logprob(tier: TierSpec, answer: TierAnswer, span: trace.Span) -> Verdict:
    if answer.logprobs is not None:
        span.set_attributes({LOGPROB_MEAN: answer.logprobs.mean, LOGPROB_MIN: answer.logprobs.min})
    return logprob_gate(
        GateInput(answer.content, answer.finish, logprobs=answer.logprobs),
        tier.min_mean_logprob,
        tier.min_token_logprob,
    )


class _Run:
    """The state of one tier's check: the first failure, notes, extra lines, the session."""

    def __init__(
        self,
        request: ChatRequest,
        tier: TierSpec,
        answer: TierAnswer,
        session: RoutingSession | None,
        span: trace.Span,
    ) -> None:
        self.request = request
        self.tier = tier
        self.answer = answer
        self.session = session
        self.span = span
        self.failed: Verdict | None = None
        self.notes: list[str] = []
        self.lines: list[StageLine] = []
        self.scored = False
        self.skipped: list[str] = []

    def add(self, verdict: Verdict) -> None:
        if verdict.skipped:
            self.skipped.append(verdict.gate)
            self.notes.append(f"gate {verdict.gate} skipped: {verdict.reason}")
        elif not verdict.passed:
            self.failed = verdict
        elif verdict.reason:
            self.notes.append(verdict.reason)

    async def score(self) -> Verdict:
        min_score = self.tier.min_score if self.tier.min_score is not None else 0.0
        if self.session is None:
            return Verdict(True, "scorer", "the answer scorer is not loaded", skipped=True)
        try:
            score = await self.session.score(self.answer.model, self.answer.content)
        except Exception as error:  # a scoring fault must degrade, never fail the request
            LOG.warning("scorer failed on tier %d: %s", self.tier.index, error, exc_info=True)
            return Verdict(True, "scorer", f"scoring failed: {error}", skipped=True)
        self.scored = True
        self.span.set_attributes({SCORER_SCORE: score, SCORER_MIN_SCORE: min_score})
        if score < min_score:
            return Verdict(False, "scorer", f"scorer {score:.3f} < min_score {min_score:.3f}")
        return Verdict(True, "scorer", f"scorer {score:.3f} >= min_score {min_score:.3f}")

    async def finish(self) -> None:
        """Tells the session how the tier ended, keeping its answer for later tiers."""
        if self.skipped:
            self.span.set_attribute(GATES_SKIPPED, self.skipped)
        if self.session is None:
            return
        wants_answers = any("scorer" in t.gates for t in self.request.model_class.tiers)
        if not self.scored and wants_answers:
            try:
                await self.session.keep(self.answer.content)
            except Exception as error:  # later tiers then score without this answer
                LOG.warning("could not keep tier %d's answer: %s", self.tier.index, error)
                return
        self.session.outcome(self.tier.index - 1, self.failed is None)

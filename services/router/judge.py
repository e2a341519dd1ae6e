"""The cheap-LLM judge gate: a cheap model is asked whether a tier's answer is right.

The judge goes through the same model port as the tiers (so through the batcher and the
dispatcher), and its call is billed as its own line of the cost table. Its reply is parsed
strictly: one word, yes or no. Anything else, or a failed call, skips the gate with the reason
instead of failing the answer, because a broken judge is no evidence against the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from services.router.model import ChatRequest, Outcome, StageLine, StageName
from services.router.policy import TierSpec
from services.router.ports import ModelPort
from shared.chat import NO_TOOLS, TEXT_FORMAT, Role, Sampling, Turn
from shared.errors import SluiceError

# The simulator's judge rule keys on this first line; keep them in step.
JUDGE_INSTRUCTION = (
    "You are grading another assistant's answer. Is the answer correct and complete? "
    "Reply with exactly one word: yes or no."
)
# A verdict needs a few tokens at most; the cap keeps a chatty judge cheap.
JUDGE_MAX_TOKENS = 4
_VERDICT = re.compile(r"\s*(yes|no)[.!]?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class JudgeResult:
    """passed is None when the judge gave no usable verdict; line is its cost-table row."""

    passed: bool | None
    reason: str
    line: StageLine


def parse_verdict(reply: str) -> bool | None:
    """True for "yes", False for "no" (case and a trailing period aside); otherwise None."""
    match = _VERDICT.fullmatch(reply)
    return None if match is None else match.group(1).lower() == "yes"


def judge_turns(question: str, answer: str) -> tuple[Turn, ...]:
    return (
        Turn(Role.SYSTEM, JUDGE_INSTRUCTION),
        Turn(Role.USER, f"Question:\n{question}\n\nAnswer:\n{answer}\n\nCorrect and complete?"),
    )


class LlmJudge:
    def __init__(self, models: ModelPort) -> None:
        self._models = models

    async def check(
        self, request: ChatRequest, tier: TierSpec, question: str, answer: str, deadline: float
    ) -> JudgeResult:
        model = request.model_class.judge_model
        spec = TierSpec(tier.index, model, ())
        # The judge's own call: text answer, greedy, a few tokens, no tools to call; never
        # packed with others.
        judged = replace(
            request,
            sampling=Sampling(temperature=0.0, max_tokens=JUDGE_MAX_TOKENS),
            response_format=TEXT_FORMAT,
            tools=NO_TOOLS,
            model_class=replace(request.model_class, packable=False),
        )
        try:
            reply = await self._models.call(judged, spec, judge_turns(question, answer), deadline)
        except (SluiceError, TimeoutError) as error:
            reason = f"judge {model} failed: {error}"
            line = StageLine(StageName.JUDGE, Outcome.SKIPPED, reason, tier.index, model)
            return JudgeResult(None, reason, line)
        verdict = parse_verdict(reply.content)
        if verdict is None:
            reason = f"judge {model} gave no yes/no verdict ({reply.content[:40]!r})"
            outcome = Outcome.SKIPPED
        else:
            reason = f"judge {model} said {'yes' if verdict else 'no'}"
            outcome = Outcome.PASSED if verdict else Outcome.REJECTED
        line = StageLine(
            StageName.JUDGE,
            outcome,
            f"tier {tier.index}: {reason}",
            tier.index,
            reply.model,
            reply.region,
            reply.usage,
            reply.cost_nano_usd,
            reply.latency_s,
        )
        return JudgeResult(verdict, reason, line)

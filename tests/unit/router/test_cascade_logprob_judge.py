"""The `logprob` and `judge` gates in the cascade: pass, fail (escalate) and skip."""

from dataclasses import replace

import pytest

from services.router.gates import LogprobSummary
from services.router.judge import JUDGE_INSTRUCTION, LlmJudge, parse_verdict
from services.router.model import Outcome, StageName, TierAnswer
from services.router.tier_gates import JUDGE_COST_USD, JUDGE_VERDICT, LOGPROB_MEAN
from shared.chat import Role
from tests.unit.router.fakes import FakeModels, answer, unavailable
from tests.unit.router.learned_rig import Rig, chat_request

LOGPROB = {0: {"gates": ["finish_reason", "logprob"], "min_mean_logprob": -0.5}}
JUDGED = {0: {"gates": ["finish_reason", "judge"]}}


def with_logprobs(base: TierAnswer, mean: float, low: float) -> TierAnswer:
    return replace(base, logprobs=LogprobSummary(mean, low, 4))


def tier_lines(outcome):
    return [line for line in outcome.lines if line.stage is StageName.TIER]


async def test_confident_logprobs_pass() -> None:
    models = FakeModels({"cheap": with_logprobs(answer("B", "cheap"), -0.1, -0.3)})
    rig = Rig(models, None)
    outcome = await rig.run(chat_request({}, LOGPROB))
    assert models.calls == ["cheap"]
    assert "mean token logprob -0.100" in tier_lines(outcome)[0].detail
    assert rig.span("tier 1 cheap")[LOGPROB_MEAN] == -0.1


async def test_low_logprobs_escalate() -> None:
    models = FakeModels(
        {"cheap": with_logprobs(answer("B", "cheap"), -1.4, -2.0), "mid": answer("C", "mid")}
    )
    outcome = await Rig(models, None).run(chat_request({}, LOGPROB))
    assert models.calls == ["cheap", "mid"]
    first = tier_lines(outcome)[0]
    assert first.outcome is Outcome.REJECTED
    assert first.detail == "gate logprob: mean token logprob -1.400 < -0.500"


async def test_no_logprobs_skips_the_gate_instead_of_failing() -> None:
    models = FakeModels({"cheap": answer("B", "cheap")})
    rig = Rig(models, None)
    outcome = await rig.run(chat_request({}, LOGPROB))
    line = tier_lines(outcome)[0]
    assert line.outcome is Outcome.USED
    assert "gate logprob skipped: the upstream returned no logprobs" in line.detail
    assert rig.span("tier 1 cheap")["sluice.gate.skipped"] == ("logprob",)


def judge_rig(verdicts: dict[str, TierAnswer | Exception], answers: dict) -> tuple[Rig, FakeModels]:
    """Tier models answer from `answers`; the judge model ("cheap") from `verdicts`."""
    models = FakeModels({**answers})
    judge_models = FakeModels({**verdicts})
    return Rig(models, None, LlmJudge(judge_models)), judge_models


async def test_a_yes_keeps_the_answer_and_the_judge_call_is_billed() -> None:
    rig, judge = judge_rig(
        {"cheap": answer("Yes.", "cheap", cost=7)}, {"cheap": answer("B", "cheap", cost=100)}
    )
    outcome = await rig.run(chat_request({"judge_model": "cheap"}, JUDGED))
    judged = [line for line in outcome.lines if line.stage is StageName.JUDGE]
    assert len(judged) == 1 and judged[0].outcome is Outcome.PASSED
    assert judged[0].cost_nano_usd == 7 and judged[0].tier == 1
    assert sum(line.cost_nano_usd for line in outcome.lines) == 107
    assert tier_lines(outcome)[0].outcome is Outcome.USED
    span = rig.span("tier 1 cheap")
    assert span[JUDGE_VERDICT] == "yes" and span[JUDGE_COST_USD] == 7e-9
    (turns,) = judge.seen_turns
    assert turns[0].role is Role.SYSTEM and turns[0].content == JUDGE_INSTRUCTION
    assert "Answer:\nB" in turns[1].content


async def test_a_no_escalates_and_both_judge_calls_count() -> None:
    rig, _ = judge_rig(
        {"cheap": answer("no", "cheap", cost=5)},
        {
            "cheap": answer("B", "cheap", cost=100),
            "mid": answer("C", "mid", cost=200),
            "top": answer("D", "top", cost=100),
        },
    )
    chat = chat_request({"judge_model": "cheap"}, {**JUDGED, 1: {"gates": ["judge"]}})
    outcome = await rig.run(chat)
    kinds = [(line.stage, line.outcome) for line in outcome.lines[:4]]
    assert kinds == [
        (StageName.TIER, Outcome.REJECTED),
        (StageName.JUDGE, Outcome.REJECTED),
        (StageName.TIER, Outcome.REJECTED),
        (StageName.JUDGE, Outcome.REJECTED),
    ]
    assert "gate judge: judge cheap said no" in outcome.lines[0].detail
    assert sum(line.cost_nano_usd for line in outcome.lines) == 100 + 5 + 200 + 5 + 100


@pytest.mark.parametrize(
    ("verdict", "reason"),
    [
        (answer("Probably yes", "cheap", cost=5), "gave no yes/no verdict"),
        (unavailable("cheap"), "failed: all endpoints"),
    ],
)
async def test_an_unparseable_or_failed_judge_skips_the_gate(verdict, reason: str) -> None:
    rig, _ = judge_rig({"cheap": verdict}, {"cheap": answer("B", "cheap")})
    outcome = await rig.run(chat_request({"judge_model": "cheap"}, JUDGED))
    assert tier_lines(outcome)[0].outcome is Outcome.USED
    assert f"gate judge skipped: judge cheap {reason}" in tier_lines(outcome)[0].detail
    judged = [line for line in outcome.lines if line.stage is StageName.JUDGE]
    assert judged[0].outcome is Outcome.SKIPPED


def test_the_verdict_parse_is_strict() -> None:
    assert [parse_verdict(t) for t in ("yes", " No. ", "YES!", "yes and no", "", "nope")] == [
        True,
        False,
        True,
        None,
        None,
        None,
    ]


async def test_the_last_tier_pays_for_no_judge() -> None:
    rig, judge = judge_rig({"cheap": answer("no", "cheap")}, {"top": answer("D", "top")})
    chat = chat_request({"judge_model": "cheap"}, {2: {"gates": ["judge"]}})
    chat = replace(chat, model_class=replace(chat.model_class, tiers=chat.model_class.tiers[2:]))
    outcome = await rig.run(chat)
    assert judge.calls == []
    assert "gate judge skipped: the last tier is accepted anyway" in tier_lines(outcome)[0].detail

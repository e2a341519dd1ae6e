"""The `scorer` gate in the cascade: escalation on a low score, agreement, degradation."""

import numpy as np

from services.router.learned import prompt_of
from services.router.model import Outcome, StageName
from services.router.tier_gates import SCORER_SCORE
from tests.unit.router.fakes import FakeModels, answer
from tests.unit.router.learned_rig import Rig, chat_request, learned_gates
from tests.unit.router.learning.fixtures import HashEmbedder

SCORED = ["finish_reason", "scorer"]


def tiers(outcome):
    return [line for line in outcome.lines if line.stage is StageName.TIER]


async def test_a_low_score_escalates_and_the_next_tier_is_scored_with_the_earlier_answer() -> None:
    models = FakeModels({"cheap": answer("B", "cheap"), "mid": answer("B", "mid")})
    learned = learned_gates(HashEmbedder())
    rig = Rig(models, learned)
    # No probability reaches 1.0, so tier 1 always fails; 0.0 always passes.
    chat = chat_request(
        {}, {0: {"gates": SCORED, "min_score": 1.0}, 1: {"gates": SCORED, "min_score": 0.0}}
    )
    outcome = await rig.run(chat)
    assert models.calls == ["cheap", "mid"]
    first, second = tiers(outcome)
    assert first.outcome is Outcome.REJECTED and "gate scorer: scorer " in first.detail
    assert "< min_score 1.000" in first.detail
    assert second.outcome is Outcome.USED and ">= min_score 0.000" in second.detail
    score = rig.span("tier 2 mid")[SCORER_SCORE]
    # The agreement features: tier 2 was scored knowing tier 1 answered "B".
    expected = learned._scorer.score(prompt_of(chat), "B", "mid", [("cheap", "B")])
    assert np.isclose(score, expected)
    assert f"{score:.3f}" in second.detail
    assert not np.isclose(score, learned._scorer.score(prompt_of(chat), "B", "mid"))


async def test_a_passing_score_keeps_the_cheap_answer() -> None:
    models = FakeModels({"cheap": answer("B", "cheap")})
    rig = Rig(models, learned_gates(HashEmbedder()))
    outcome = await rig.run(chat_request({}, {0: {"gates": SCORED, "min_score": 0.0}}))
    assert models.calls == ["cheap"]
    assert tiers(outcome)[0].outcome is Outcome.USED
    assert 0.0 < rig.span("tier 1 cheap")[SCORER_SCORE] < 1.0


async def test_a_rule_gate_failure_skips_scoring_but_keeps_the_answer_for_agreement() -> None:
    embedder = HashEmbedder()
    models = FakeModels({"cheap": answer("", "cheap"), "mid": answer("B", "mid")})
    rig = Rig(models, learned_gates(embedder))
    gates = ["finish_reason", "min_length", "scorer"]
    chat = chat_request(
        {}, {0: {"gates": gates, "min_score": 0.0}, 1: {"gates": SCORED, "min_score": 0.0}}
    )
    outcome = await rig.run(chat)
    assert "gate min_length" in tiers(outcome)[0].detail
    assert SCORER_SCORE not in rig.span("tier 1 cheap")
    assert SCORER_SCORE in rig.span("tier 2 mid")
    # Tier 1's empty answer was embedded (kept) so tier 2's agreement features saw it.
    assert any(call == [""] for call in embedder.calls)


class BrokenEmbedder:
    def embed(self, texts):
        raise RuntimeError("model file vanished")


async def test_a_scoring_failure_skips_the_gate_and_never_fails_the_request() -> None:
    models = FakeModels({"cheap": answer("B", "cheap")})
    rig = Rig(models, learned_gates(BrokenEmbedder()))
    outcome = await rig.run(chat_request({}, {0: {"gates": SCORED, "min_score": 1.0}}))
    line = tiers(outcome)[0]
    assert line.outcome is Outcome.USED
    assert "gate scorer skipped: scoring failed: model file vanished" in line.detail
    assert rig.span("tier 1 cheap")["sluice.gate.skipped"] == ("scorer",)


async def test_without_a_loaded_scorer_the_gate_is_skipped() -> None:
    models = FakeModels({"cheap": answer("B", "cheap")})
    outcome = await Rig(models, None).run(
        chat_request({}, {0: {"gates": SCORED, "min_score": 1.0}})
    )
    assert "gate scorer skipped: the answer scorer is not loaded" in tiers(outcome)[0].detail

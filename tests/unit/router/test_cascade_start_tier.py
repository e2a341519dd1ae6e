"""The learned start tier: the predictor picks the first tier, skipped tiers are reported, and
the gate outcomes teach it online."""

from dataclasses import replace
from pathlib import Path
from typing import Any

from services.router.cascade import START_TIER, START_TIER_REASON
from services.router.model import Outcome, StageName
from tests.unit.router.fakes import FakeModels, answer
from tests.unit.router.learned_rig import Rig, chat_request, learned_gates
from tests.unit.router.learning.fixtures import HashEmbedder

# Tier 1 must answer exactly "Paris", which the cheap model never does: it always fails.
FORMAT: dict[str, Any] = {"gate_settings": {"expected_format": "Paris"}}
CHEAP_FAILS: dict[int, dict[str, Any]] = {0: {"gates": ["format"]}, 1: {"gates": []}}


def scripted() -> FakeModels:
    return FakeModels(
        {"cheap": answer("Lyon", "cheap"), "mid": answer("Paris", "mid"), "top": answer("x", "top")}
    )


async def test_the_start_tier_learns_to_skip_a_tier_that_keeps_failing(tmp_path: Path) -> None:
    learned = learned_gates(HashEmbedder(), tmp_path)
    chat = chat_request({"learned_start": True, **FORMAT}, CHEAP_FAILS)
    models = scripted()
    rig = Rig(models, learned)
    first = await rig.run(chat)
    # With no history every tier looks even, and the cheapest expected start is tier 1.
    assert [line.outcome for line in first.lines[:2]] == [Outcome.REJECTED, Outcome.USED]
    assert rig.span("request")[START_TIER] == 1
    for _ in range(6):
        await rig.run(chat)
    models.calls.clear()
    learnt = await rig.run(chat)
    assert models.calls == ["mid"]
    skipped = learnt.lines[0]
    assert (skipped.stage, skipped.outcome, skipped.tier) == (
        StageName.TIER,
        Outcome.SKIPPED,
        1,
    )
    assert skipped.detail.startswith("start-tier predictor chose tier 2: lowest expected cost")
    assert "tier 1 P(accept)=" in skipped.detail and skipped.cost_nano_usd == 0
    request_span = rig.span("request")
    assert request_span[START_TIER] == 2
    assert "P(accept)" in str(request_span[START_TIER_REASON])


async def test_without_learned_start_every_request_enters_at_tier_one(tmp_path: Path) -> None:
    chat = chat_request(FORMAT, CHEAP_FAILS)
    models = scripted()
    rig = Rig(models, learned_gates(HashEmbedder(), tmp_path))
    for _ in range(5):
        await rig.run(chat)
    assert models.calls == ["cheap", "mid"] * 5


class BrokenEmbedder:
    def embed(self, texts):
        raise RuntimeError("no model")


async def test_a_predictor_failure_starts_at_tier_one(tmp_path: Path) -> None:
    chat = chat_request({"learned_start": True, **FORMAT}, CHEAP_FAILS)
    models = scripted()
    rig = Rig(models, learned_gates(BrokenEmbedder(), tmp_path))
    outcome = await rig.run(chat)
    assert models.calls == ["cheap", "mid"] and outcome.answer.model == "mid"
    assert "predictor failed: no model" in str(rig.span("request")[START_TIER_REASON])


async def test_each_policy_version_learns_on_its_own(tmp_path: Path) -> None:
    learned = learned_gates(HashEmbedder(), tmp_path)
    chat = chat_request({"learned_start": True, **FORMAT}, CHEAP_FAILS)
    rig = Rig(scripted(), learned)
    for _ in range(7):
        await rig.run(chat)
    candidate = replace(chat, policy_version="candidate-2")
    models = scripted()
    await Rig(models, learned).run(candidate)
    # The candidate's predictor has seen nothing yet, so it still starts at tier 1.
    assert models.calls == ["cheap", "mid"]

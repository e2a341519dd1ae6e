from __future__ import annotations

import numpy as np

from services.router.learning.runtime import LearnedRouting
from services.router.learning.scorer import MODELS_DIR, AnswerScorer
from services.router.learning.start_tier import StartTierPredictor, StartTierSettings
from tests.unit.router.learning.fixtures import ARC_PROMPT, HashEmbedder

CHEAP, MID = "zero-one-ai/Yi-34B-Chat", "gpt-3.5-turbo-1106"


def routing(tiers: int = 3) -> LearnedRouting:
    scorer = AnswerScorer.load(MODELS_DIR / "answer_scorer.json", HashEmbedder())
    predictor = StartTierPredictor(tiers, StartTierSettings(exploration=0.0))
    return LearnedRouting(scorer, predictor)


async def test_each_tier_is_scored_against_the_answers_before_it() -> None:
    shared = routing()
    agreeing, disputing = shared.session(ARC_PROMPT), shared.session(ARC_PROMPT)
    await agreeing.judge(0, CHEAP, "C", min_score=1.0)
    await disputing.judge(0, CHEAP, "B", min_score=1.0)
    agreed = await agreeing.judge(1, MID, "C", min_score=0.5)
    disputed = await disputing.judge(1, MID, "C", min_score=0.5)
    assert agreed.score > disputed.score
    direct = shared.scorer.score(ARC_PROMPT, "C", MID, [(CHEAP, "C")])
    assert agreed.score == direct
    assert not disputed.passed or disputed.score >= 0.5
    assert "min_score" in disputed.reason


async def test_finishing_teaches_the_start_tier_predictor() -> None:
    shared = routing()
    assert shared.predictor is not None
    before = None
    for _ in range(12):
        session = shared.session(ARC_PROMPT)
        assert await session.start_tier([1.0, 2.0, 20.0]) in (0, 1)
        before = (
            before
            if before is not None
            else shared.predictor.acceptance(await session.prompt_vector())[0]
        )
        await session.judge(0, CHEAP, "C", min_score=1.01)  # always rejected
        await session.record(1, "C", passed=True)
        session.finish()
    vector = await shared.session(ARC_PROMPT).prompt_vector()
    assert shared.predictor.acceptance(vector)[0] < before
    assert await shared.session(ARC_PROMPT).start_tier([1.0, 2.0, 20.0]) == 1


async def test_without_a_predictor_every_request_starts_at_the_first_tier() -> None:
    shared = LearnedRouting(AnswerScorer.load(MODELS_DIR / "answer_scorer.json", HashEmbedder()))
    session = shared.session(ARC_PROMPT)
    assert await session.start_tier([1.0, 2.0]) == 0
    session.finish()  # nothing to learn, nothing raised


def test_loading_keeps_the_shipped_prior_only_for_a_matching_tier_count() -> None:
    three = LearnedRouting.load(tiers=3, embedder=HashEmbedder())
    two = LearnedRouting.load(tiers=2, embedder=HashEmbedder())
    assert three.predictor is not None and three.predictor.tiers == 3
    assert two.predictor is not None
    vector = np.full(384, 1 / np.sqrt(384), dtype=np.float32)
    # No prior for two tiers: the estimate starts from an even 0.5.
    assert two.predictor.acceptance(vector)[0] == 0.5
    assert LearnedRouting.load(embedder=HashEmbedder()).predictor is None

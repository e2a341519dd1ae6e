"""What the router's cascade calls at run time: one `RoutingSession` per request.

The session embeds the prompt once, keeps every tier's answer (and its vector) so later tiers
are scored with the earlier answers they agree or disagree with (the agreement features), runs
the blocking embedding off the event loop, and at the end reports every tier's gate outcome
to the start-tier predictor so it learns online.

    routing = LearnedRouting.load(tiers=3)          # once, at start-up
    session = routing.session(prompt)               # per request
    start = await session.start_tier(tier_costs)    # optional: skip hopeless cheap tiers
    verdict = await session.judge(index, model, answer, min_score)   # per tier
    session.finish()                                 # after the cascade, success or not
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from services.router.learning.embedding import TextEmbedder
from services.router.learning.features import ANSWER_CHARS, read_prompt
from services.router.learning.scorer import MODELS_DIR, AnswerScorer
from services.router.learning.start_tier import (
    StartChoice,
    StartTierPredictor,
    StartTierSettings,
    TierPrior,
)


@dataclass(frozen=True)
class ScoreVerdict:
    passed: bool
    score: float  # P(answer is right) from the scorer
    min_score: float

    @property
    def reason(self) -> str:
        return f"scorer {self.score:.3f} < min_score {self.min_score:.3f}"


class LearnedRouting:
    """The scorer and the start-tier predictor of one model class, shared by all requests."""

    def __init__(self, scorer: AnswerScorer, predictor: StartTierPredictor | None = None) -> None:
        self.scorer = scorer
        self.predictor = predictor

    @classmethod
    def load(
        cls,
        models_dir: Path = MODELS_DIR,
        *,
        tiers: int | None = None,
        embedder: TextEmbedder | None = None,
        settings: StartTierSettings | None = None,
    ) -> LearnedRouting:
        """Scorer from answer_scorer.json; with `tiers`, a predictor seeded by start_tier.json.

        The shipped prior is used only when it was fitted for as many tiers as the class has;
        otherwise the predictor starts from its own running acceptance rates.
        """
        scorer = AnswerScorer.load(models_dir / "answer_scorer.json", embedder)
        return cls.share(scorer, tiers, models_dir, settings)

    @classmethod
    def share(
        cls,
        scorer: AnswerScorer,
        tiers: int | None,
        models_dir: Path = MODELS_DIR,
        settings: StartTierSettings | None = None,
    ) -> LearnedRouting:
        """One scorer (and its loaded embedding model) shared by several model classes, each
        with its own start-tier predictor, since each class has its own tiers."""
        if tiers is None:
            return cls(scorer)
        prior_path = models_dir / "start_tier.json"
        prior = TierPrior.load(prior_path) if prior_path.exists() else None
        if prior is not None and prior.bias.shape != (tiers,):
            prior = None
        return cls(scorer, StartTierPredictor(tiers, settings, prior))

    def session(self, prompt: str) -> RoutingSession:
        return RoutingSession(self, prompt)


class RoutingSession:
    """One request's view: its prompt vector, the answers so far and the gate outcomes."""

    def __init__(self, routing: LearnedRouting, prompt: str) -> None:
        self._routing = routing
        self._info = read_prompt(prompt)
        self._prompt_vector: NDArray[np.float32] | None = None
        self._answers: list[str] = []
        self._vectors: list[NDArray[np.float32]] = []
        self._outcomes: list[tuple[int, bool]] = []

    async def _embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return await asyncio.to_thread(self._routing.scorer.embed, list(texts))

    async def prompt_vector(self) -> NDArray[np.float32]:
        if self._prompt_vector is None:
            self._prompt_vector = (await self._embed([self._info.focus]))[0]
        return self._prompt_vector

    async def start_tier(self, tier_costs: Sequence[float]) -> int:
        """0-based tier to enter at; 0 when the class has no predictor.

        tier_costs: this prompt's expected cost on each tier in any unit, e.g. the catalogue
        price of the prompt's tokens on each tier's model.
        """
        return (await self.start_choice(tier_costs)).tier

    async def start_choice(self, tier_costs: Sequence[float]) -> StartChoice:
        """The start tier and why (estimated acceptance and expected cost per tier)."""
        predictor = self._routing.predictor
        if predictor is None:
            return StartChoice(0, "no start-tier predictor for this class")
        return predictor.decide(await self.prompt_vector(), tier_costs)

    async def acceptance(self) -> tuple[float, ...] | None:
        """The predictor's P(accepted) per tier for this prompt; None without a predictor.
        The router's start-tier decision (class_start.py) weighs it with the class's own."""
        predictor = self._routing.predictor
        if predictor is None:
            return None
        return tuple(float(p) for p in predictor.acceptance(await self.prompt_vector()))

    async def judge(self, tier: int, model: str, answer: str, min_score: float) -> ScoreVerdict:
        """Scores a tier's answer against the earlier tiers' answers, keeps it, and records
        the tier's outcome for the predictor."""
        score = await self.score(model, answer)
        verdict = ScoreVerdict(score >= min_score, score, min_score)
        self.outcome(tier, verdict.passed)
        return verdict

    async def score(self, model: str, answer: str) -> float:
        """P(answer is right) given the answers of the tiers before it; then keeps the answer
        so later tiers are scored against it. Blocking work runs in a thread."""
        prompt_vector = await self.prompt_vector()
        answer_vector = (await self._embed([answer[:ANSWER_CHARS]]))[0]
        vectors = np.stack([prompt_vector, answer_vector, *self._vectors])
        earlier = list(self._answers)
        score = await asyncio.to_thread(
            self._routing.scorer.score_embedded, self._info, answer, model, earlier, vectors
        )
        self._answers.append(answer)
        self._vectors.append(answer_vector)
        return score

    async def keep(self, answer: str) -> None:
        """Keeps an answer the scorer did not judge, for the agreement features of later tiers."""
        self._vectors.append((await self._embed([answer[:ANSWER_CHARS]]))[0])
        self._answers.append(answer)

    def outcome(self, tier: int, passed: bool) -> None:
        """Records whether the tier's answer passed its gates (0-based tier)."""
        self._outcomes.append((tier, passed))

    async def record(self, tier: int, answer: str, passed: bool) -> None:
        """Keeps an answer the scorer did not judge, and the tier's outcome."""
        await self.keep(answer)
        self.outcome(tier, passed)

    def finish(self) -> None:
        """Teaches the start-tier predictor how this request went; call once, at the end."""
        predictor = self._routing.predictor
        if predictor is not None and self._prompt_vector is not None and self._outcomes:
            predictor.observe(self._prompt_vector, self._outcomes)
        self._outcomes = []

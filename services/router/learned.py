"""The learned parts of the cascade at run time: the answer scorer and the start tier.

The scorer (and the embedding model it needs) is loaded once per process and shared; each
model class of each policy gets its own start-tier predictor, since each has its own tiers and
learns from its own traffic. Domain code: no gRPC.
"""

from __future__ import annotations

import logging
from pathlib import Path

from services.router.learning.embedding import MiniLm, TextEmbedder
from services.router.learning.runtime import LearnedRouting, RoutingSession
from services.router.learning.scorer import MODELS_DIR, AnswerScorer
from services.router.learning.start_tier import StartTierSettings
from services.router.model import ChatRequest
from shared.chat import Role
from shared.settings import ConfigError

LOG = logging.getLogger(__name__)


class ScorerUnavailable(ConfigError):
    """A policy uses the scorer or the learned start tier, but the model cannot be loaded."""


class LearnedGates:
    """Opens one RoutingSession per request of a model class that uses learning."""

    def __init__(
        self,
        scorer: AnswerScorer,
        models_dir: Path = MODELS_DIR,
        settings: StartTierSettings | None = None,
    ) -> None:
        self._scorer = scorer
        self._models_dir = models_dir
        self._settings = settings
        # One routing (start-tier memory) per policy version, tenant and model class.
        self._routings: dict[tuple[str, str, str], LearnedRouting] = {}

    @classmethod
    def load(
        cls,
        models_dir: Path = MODELS_DIR,
        embedder: TextEmbedder | None = None,
        settings: StartTierSettings | None = None,
    ) -> LearnedGates:
        """Reads the scorer file (fast); the embedding model loads in `load_embedder`."""
        try:
            scorer = AnswerScorer.load(models_dir / "answer_scorer.json", embedder or MiniLm())
        except (OSError, ValueError, KeyError) as error:
            raise ScorerUnavailable(
                f"answer scorer {models_dir / 'answer_scorer.json'} cannot be loaded: {error}"
            ) from None
        return cls(scorer, models_dir, settings)

    def load_embedder(self) -> None:
        """Loads the embedding model and embeds once; blocking, so run it in a thread."""
        try:
            self._scorer.embed(["warm-up"])
        except Exception as error:
            raise ScorerUnavailable(f"the scorer's embedding model cannot load: {error}") from None

    def session(self, request: ChatRequest) -> RoutingSession | None:
        """A session for this request, or None when its model class uses no learning."""
        spec = request.model_class
        if not spec.uses_learning:
            return None
        key = (request.policy_version, request.tenant.tenant_id, spec.name)
        routing = self._routings.get(key)
        if routing is None:
            tiers = len(spec.tiers) if spec.learned_start else None
            routing = LearnedRouting.share(self._scorer, tiers, self._models_dir, self._settings)
            self._routings[key] = routing
        return routing.session(prompt_of(request))


def prompt_of(request: ChatRequest) -> str:
    """The text the scorer reads: the last user turn, which is what it was trained on."""
    for turn in reversed(request.turns):
        if turn.role is Role.USER:
            return turn.content
    return request.turns[-1].content if request.turns else ""

"""Builders for cascade tests with the learned gates: policies, requests and a recording span."""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.router.cascade import Cascade, CascadeOutcome
from services.router.learned import LearnedGates
from services.router.learning.embedding import TextEmbedder
from services.router.learning.scorer import MODELS_DIR
from services.router.learning.start_tier import StartTierSettings
from services.router.model import ChatRequest
from services.router.tier_gates import TierGates
from tests.unit.router.fixtures import admit_acme, policy_doc

PROMPT = "Which planet is closest to the Sun?\nA) Venus\nB) Mercury\nAnswer:"
# What each tier's prompt costs in the tests: the start-tier predictor weighs these.
TIER_COSTS = {"cheap": 1, "mid": 2, "top": 3}


def chat_request(class_changes: dict[str, Any], tier_changes: dict[int, dict[str, Any]]):
    doc = copy.deepcopy(policy_doc())
    chat = doc["tenants"]["acme"]["model_classes"]["chat"]
    chat.update(class_changes)
    for index, changes in tier_changes.items():
        chat["tiers"][index].update(changes)
    return admit_acme(doc, PROMPT)


def learned_gates(embedder: TextEmbedder, tmp_path: Path | None = None) -> LearnedGates:
    """The shipped scorer; with tmp_path, no start-tier prior (the predictor starts even)."""
    models_dir = MODELS_DIR
    if tmp_path is not None:
        shutil.copy(MODELS_DIR / "answer_scorer.json", tmp_path / "answer_scorer.json")
        models_dir = tmp_path
    settings = StartTierSettings(exploration=0.0, prior_weight=0.5)
    return LearnedGates.load(models_dir, embedder, settings)


class Rig:
    def __init__(self, models: Any, learned: LearnedGates | None, judge: Any = None) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = provider.get_tracer("test")
        self.cascade = Cascade(
            models,
            self.tracer,
            prompt_cost=lambda model, turns: TIER_COSTS[model],
            learned=learned,
            gates=TierGates(judge),
        )

    async def run(self, chat: ChatRequest) -> CascadeOutcome:
        with self.tracer.start_as_current_span("request"):
            events = [
                e
                async for e in self.cascade.run(
                    chat, chat.turns, time.monotonic() + 5, stream=False
                )
            ]
        outcome = events[-1]
        assert isinstance(outcome, CascadeOutcome)
        return outcome

    def span(self, name: str) -> dict[str, Any]:
        spans = [s for s in self.exporter.get_finished_spans() if s.name == name]
        assert spans, f"no span {name!r}"
        return dict(spans[-1].attributes or {})

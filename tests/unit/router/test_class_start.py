"""The per-class start tier: a request class whose cheap tiers keep failing learns to start
higher, so it costs no more than the baseline; a class that passes stays cheap; the start is
never above the baseline's tier; exploration brings a class back down once its cheap tier
recovers."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.router.cascade import START_TIER_REASON, Cascade, CascadeOutcome
from services.router.class_start import (
    CLASS_KEY,
    CLASS_START_TIER,
    ClassStarts,
    ClassStartSettings,
    class_key,
    max_tokens_band,
)
from services.router.model import ChatRequest, Outcome
from shared.chat import FormatKind, ResponseFormat, Sampling
from tests.unit.router.fakes import FakeModels, answer
from tests.unit.router.test_cascade import request

# What each tier costs, in the prompt estimate and in the answer's bill alike; "top" is the
# tenant's baseline model.
PRICES = {"cheap": 10, "mid": 100, "top": 1000}
BASELINE = PRICES["top"]
JSON_ANSWER = '{"capital": "Paris"}'


def json_request() -> ChatRequest:
    return replace(request(), response_format=ResponseFormat(FormatKind.JSON_OBJECT))


def models(cheap: str, mid: str, top: str = JSON_ANSWER) -> FakeModels:
    return FakeModels(
        {
            name: answer(text, name, cost=PRICES[name])
            for name, text in (("cheap", cheap), ("mid", mid), ("top", top))
        }
    )


class Rig:
    def __init__(self, fakes: FakeModels, starts: ClassStarts) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = provider.get_tracer("test")
        self.models = fakes
        self.cascade = Cascade(
            fakes, self.tracer, prompt_cost=lambda model, turns: PRICES[model], starts=starts
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

    def request_span(self) -> dict[str, object]:
        spans = [s for s in self.exporter.get_finished_spans() if s.name == "request"]
        return dict(spans[-1].attributes or {})


def cost(outcome: CascadeOutcome) -> int:
    return sum(line.cost_nano_usd for line in outcome.lines)


def no_exploring() -> ClassStarts:
    return ClassStarts(ClassStartSettings(exploration=0.0))


async def test_a_class_whose_cheap_tiers_always_fail_converges_to_the_baseline_cost() -> None:
    # JSON mode that only the top model gets right: each request pays all three tiers at first.
    rig = Rig(models("Sure: Paris", "Paris, of course"), no_exploring())
    costs = [cost(await rig.run(json_request())) for _ in range(12)]
    assert costs[0] == 10 + 100 + 1000 > BASELINE
    # Enough evidence moves the class's start to the top tier, and it stays there.
    assert costs[-4:] == [BASELINE] * 4
    learnt = await rig.run(json_request())
    assert rig.models.calls[-1:] == ["top"]
    skipped = [line for line in learnt.lines if line.outcome is Outcome.SKIPPED]
    assert [line.tier for line in skipped] == [1, 2]
    assert "json_object/no-tools/max_tokens unset" in skipped[0].detail
    span = rig.request_span()
    assert span[CLASS_START_TIER] == 3
    assert span[CLASS_KEY] == "chat/json_object/no-tools/max_tokens unset"


async def test_a_class_starts_at_the_tier_that_passes() -> None:
    rig = Rig(models("Sure: Paris", JSON_ANSWER), no_exploring())
    for _ in range(8):
        await rig.run(json_request())
    rig.models.calls.clear()
    outcome = await rig.run(json_request())
    assert rig.models.calls == ["mid"] and cost(outcome) == PRICES["mid"]


async def test_a_tier_is_never_passed_over_on_less_evidence_than_the_minimum() -> None:
    starts = ClassStarts(ClassStartSettings(min_evidence=5, exploration=0.0))
    rig = Rig(models("Sure: Paris", JSON_ANSWER), starts)
    for _ in range(4):
        await rig.run(json_request())
    assert rig.models.calls == ["cheap", "mid"] * 4


async def test_a_class_that_passes_stays_cheap_and_classes_learn_apart() -> None:
    rig = Rig(models("Sure: Paris", JSON_ANSWER, "Paris."), no_exploring())
    plain = replace(request(), sampling=Sampling(max_tokens=200))
    for _ in range(10):
        await rig.run(json_request())
        await rig.run(plain)
    rig.models.calls.clear()
    await rig.run(plain)
    await rig.run(json_request())
    # The plain class's cheap answers pass: it keeps starting at the cheapest tier.
    assert rig.models.calls == ["cheap", "mid"]
    assert rig.request_span()[CLASS_START_TIER] == 2


async def test_the_start_is_never_above_the_baselines_tier() -> None:
    # The same class as above, which learns to start at the top tier when that is the
    # baseline; with the mid model as the baseline, starting at the top would cost more than
    # calling the baseline directly, so no request starts there.
    rig = Rig(models("Sure: Paris", "Paris, of course"), no_exploring())
    cheaper_baseline = json_request()
    tenant = replace(cheaper_baseline.tenant, baseline_model="mid")
    chat = replace(cheaper_baseline, tenant=tenant)
    for _ in range(12):
        outcome = await rig.run(chat)
        first = next(line for line in outcome.lines if line.outcome is not Outcome.SKIPPED)
        assert first.tier <= 2
    assert rig.request_span()[CLASS_START_TIER] in (1, 2)
    assert "capped at tier 2 (the baseline's price)" in str(rig.request_span()[START_TIER_REASON])


async def test_exploration_brings_a_class_back_down_after_the_cheap_tier_recovers() -> None:
    # Every fourth request of a class that starts above its cheapest tier explores.
    draws = itertools.cycle([0.9, 0.9, 0.9, 0.0])
    starts = ClassStarts(ClassStartSettings(exploration=0.05), draw=lambda: next(draws))
    rig = Rig(models("Sure: Paris", JSON_ANSWER), starts)
    for _ in range(12):
        await rig.run(json_request())
    rig.models.calls.clear()
    for _ in range(4):
        await rig.run(json_request())
    # Starting at mid; one in four explored the cheap tier, which still failed.
    assert rig.models.calls.count("cheap") == 1
    rig.models.script["cheap"] = answer(JSON_ANSWER, "cheap", cost=PRICES["cheap"])
    for _ in range(16):
        await rig.run(json_request())
    rig.models.calls.clear()
    for _ in range(4):
        outcome = await rig.run(json_request())
    # Back down: the cheap tier answers every request again, at the cheap price.
    assert rig.models.calls == ["cheap"] * 4 and cost(outcome) == PRICES["cheap"]


def test_the_class_key_names_format_tools_and_max_tokens_band() -> None:
    assert [max_tokens_band(n) for n in (0, 5, 16, 17, 256, 4000)] == [
        "unset", "<=16", "<=16", "<=256", "<=256", ">256",
    ]  # fmt: skip
    chat = replace(json_request(), sampling=Sampling(max_tokens=5))
    assert class_key(chat) == "chat/json_object/no-tools/max_tokens <=16"

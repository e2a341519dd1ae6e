"""The cascade with tools, several choices and the caller's own max_tokens: a cheap tier's bad
tool call escalates (its kind counted on the span and in the cost line), every choice must pass,
an answer cut where the caller asked is the answer, and streamed pieces keep their shape."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.router.cascade import Cascade, CascadeOutcome
from services.router.judge import LlmJudge
from services.router.model import ChatRequest, Outcome, StageName, TierAnswer, TierDelta
from services.router.policy import TierSpec
from services.router.tier_gates import TOOL_CALL_REASON, TierGates
from shared.chat import (
    Choice,
    ChoiceDelta,
    Finish,
    Sampling,
    ToolCall,
    ToolCallDelta,
    ToolFunction,
    ToolSet,
    Turn,
)
from tests.unit.router.fakes import FakeModels, answer
from tests.unit.router.test_cascade import request

WEATHER = ToolFunction(
    "get_weather",
    "Weather in a city",
    json.dumps(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    ),
)
TOOLS = ToolSet((WEATHER,))


def calls_answer(model: str, arguments: str, name: str = "get_weather") -> TierAnswer:
    calls = (ToolCall("call_1", name, arguments),)
    plain = answer("", model, Finish.TOOL_CALLS)
    return replace(plain, choices=(Choice(0, "", Finish.TOOL_CALLS, calls),))


class Recorder:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = provider.get_tracer("test")

    def tier_spans(self) -> dict[str, dict[str, Any]]:
        return {
            s.name: dict(s.attributes or {})
            for s in self.exporter.get_finished_spans()
            if s.name.startswith("tier ")
        }


async def run(
    models: Any, chat: ChatRequest, recorder: Recorder | None = None, *, stream: bool = False
) -> tuple[CascadeOutcome, list[TierDelta]]:
    tracer = (recorder or Recorder()).tracer
    events = [
        e
        async for e in Cascade(models, tracer).run(
            chat, chat.turns, time.monotonic() + 5, stream=stream
        )
    ]
    outcome = events[-1]
    assert isinstance(outcome, CascadeOutcome)
    return outcome, [e for e in events if isinstance(e, TierDelta)]


def tier_lines(outcome: CascadeOutcome) -> list[Any]:
    return [line for line in outcome.lines if line.stage is StageName.TIER]


async def test_a_cheap_tiers_bad_tool_call_escalates_and_its_kind_is_counted() -> None:
    models = FakeModels(
        {
            "cheap": calls_answer("cheap", '{"town": "Lisbon"}'),
            "mid": calls_answer("mid", '{"city": "Lisbon"}'),
        }
    )
    recorder = Recorder()
    outcome, _ = await run(models, replace(request(), tools=TOOLS), recorder)
    assert models.calls == ["cheap", "mid"]
    assert outcome.answer.tool_calls[0].arguments == '{"city": "Lisbon"}'
    lines = tier_lines(outcome)
    assert lines[0].outcome is Outcome.REJECTED
    assert lines[0].detail.startswith("gate tool_call: schema: ")
    spans = recorder.tier_spans()
    assert spans["tier 1 cheap"][TOOL_CALL_REASON] == "schema"
    assert TOOL_CALL_REASON not in spans["tier 2 mid"]


async def test_a_call_of_a_function_never_offered_is_counted_as_unknown_function() -> None:
    models = FakeModels(
        {
            "cheap": calls_answer("cheap", "{}", name="get_weather_v2"),
            "mid": calls_answer("mid", '{"city": "Oslo"}'),
        }
    )
    recorder = Recorder()
    outcome, _ = await run(models, replace(request(), tools=TOOLS), recorder)
    assert outcome.answer.model == "mid"
    assert recorder.tier_spans()["tier 1 cheap"][TOOL_CALL_REASON] == "unknown_function"


async def test_with_several_choices_every_choice_must_pass() -> None:
    good = Choice(0, "Paris is the capital.", Finish.STOP)
    cut = Choice(1, "Paris is the", Finish.LENGTH)
    cheap = replace(answer(good.content, "cheap"), choices=(good, cut))
    mid = replace(answer(good.content, "mid"), choices=(good, replace(good, index=1)))
    models = FakeModels({"cheap": cheap, "mid": mid})
    chat = replace(request(), sampling=Sampling(n=2))
    outcome, _ = await run(models, chat)
    assert outcome.answer.model == "mid"
    rejected = tier_lines(outcome)[0]
    assert rejected.detail == "gate finish_reason: finish_reason was 'length' (choice 1)"


async def test_an_answer_cut_at_the_callers_own_max_tokens_is_the_answer() -> None:
    models = FakeModels({"cheap": answer("Paris is the", "cheap", Finish.LENGTH)})
    chat = replace(request(), sampling=Sampling(max_tokens=3))
    outcome, _ = await run(models, chat)
    assert models.calls == ["cheap"]
    assert tier_lines(outcome)[0].outcome is Outcome.USED
    # The same cut under the class's own max_tokens is a failure: the caller asked for more.
    models = FakeModels(
        {"cheap": answer("Paris is the", "cheap", Finish.LENGTH), "mid": answer("Paris.", "mid")}
    )
    outcome, _ = await run(models, request())
    assert models.calls == ["cheap", "mid"]


@dataclass
class PieceModels:
    """Streams a tool call as fragments, as the dispatcher relays them."""

    final: TierAnswer

    async def call(self, *args: Any) -> TierAnswer:
        return self.final

    async def stream(
        self, request: ChatRequest, tier: TierSpec, turns: tuple[Turn, ...], deadline: float
    ) -> AsyncIterator[str | ChoiceDelta | TierAnswer]:
        yield ChoiceDelta(0, tool_calls=(ToolCallDelta(0, "call_1", "get_weather", ""),))
        yield ChoiceDelta(0, tool_calls=(ToolCallDelta(0, arguments='{"city": "Oslo"}'),))
        yield self.final


async def test_streamed_pieces_reach_the_caller_as_pieces() -> None:
    final = calls_answer("cheap", '{"city": "Oslo"}')
    outcome, deltas = await run(PieceModels(final), replace(request(), tools=TOOLS), stream=True)
    assert outcome.answer is final
    assert [d.text for d in deltas] == ["", ""]
    pieces = [d.piece for d in deltas if d.piece is not None]
    assert "".join(c.arguments for p in pieces for c in p.tool_calls) == '{"city": "Oslo"}'
    assert pieces[0].tool_calls[0].name == "get_weather"
    assert {(d.attempt, d.tier) for d in deltas} == {(1, 1)}


@dataclass
class RecordingJudge:
    """The judge model's port: says yes, and keeps the requests it was called with."""

    requests: list[ChatRequest]

    async def call(
        self, request: ChatRequest, tier: TierSpec, turns: tuple[Turn, ...], deadline: float
    ) -> TierAnswer:
        self.requests.append(request)
        return answer("yes", "cheap", cost=1)

    def stream(self, *args: Any) -> AsyncIterator[str | ChoiceDelta | TierAnswer]:
        raise AssertionError("the judge never streams")


async def test_the_judges_call_offers_no_tools() -> None:
    chat = replace(request(), tools=TOOLS)
    tiers = chat.model_class.tiers
    judged_class = replace(
        chat.model_class,
        judge_model="cheap",
        tiers=(replace(tiers[0], gates=("finish_reason", "judge")), *tiers[1:]),
    )
    chat = replace(chat, model_class=judged_class)
    judge = RecordingJudge([])
    models = FakeModels({"cheap": answer("It is sunny in Oslo.", "cheap")})
    tracer = Recorder().tracer
    cascade = Cascade(models, tracer, gates=TierGates(LlmJudge(judge)))
    events = [e async for e in cascade.run(chat, chat.turns, time.monotonic() + 5, stream=False)]
    assert isinstance(events[-1], CascadeOutcome) and events[-1].answer.model == "cheap"
    assert [r.tools for r in judge.requests] == [ToolSet()]

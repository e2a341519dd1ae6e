"""The tier cascade: cheapest first, escalation on gate failure, every attempt's cost counted."""

import time
from dataclasses import replace

import pytest
from opentelemetry.sdk.trace import TracerProvider

from services.router.admission import Admission, Asked
from services.router.cascade import Cascade, CascadeOutcome, NoTierAnswered
from services.router.model import Outcome, StageName, TierDelta
from shared.chat import Finish, Role, Sampling, Turn
from shared.errors import BudgetExhausted, Unavailable
from shared.tokens import TokenCounter
from tests.unit.router.fakes import FakeModels, answer, unavailable
from tests.unit.router.fixtures import policy

TRACER = TracerProvider().get_tracer("test")
REFUSAL = "I'm sorry, but I can't help with that."


def request(max_cost: int = 0):
    return Admission(policy(), TokenCounter(), 10_000).admit(
        "acme-key",
        Asked(
            request_id="r1",
            model_class="",
            turns=(Turn(Role.USER, "question?"),),
            sampling=Sampling(),
            cache_mode=None,
            max_cost_nano_usd=max_cost,
        ),
    )


async def run(models: FakeModels, *, max_cost: int = 0, stream: bool = False):
    chat = request(max_cost)
    events = [
        e
        async for e in Cascade(models, TRACER).run(
            chat, chat.turns, time.monotonic() + 5, stream=stream
        )
    ]
    outcome = events[-1]
    assert isinstance(outcome, CascadeOutcome)
    return outcome, events[:-1]


async def test_first_tier_answer_that_passes_is_used() -> None:
    models = FakeModels({"cheap": answer("Paris.", "cheap")})
    outcome, _ = await run(models)
    assert models.calls == ["cheap"]
    assert outcome.tier.index == 1
    tiers = [line for line in outcome.lines if line.stage is StageName.TIER]
    assert [(line.outcome, line.cost_nano_usd) for line in tiers] == [(Outcome.USED, 100)]


async def test_gate_failure_escalates_and_every_attempt_costs() -> None:
    models = FakeModels(
        {
            "cheap": answer("Paris is the", "cheap", Finish.LENGTH, cost=10),
            "mid": answer(REFUSAL, "mid", cost=20),
            "top": answer("Paris.", "top", cost=300),
        }
    )
    outcome, _ = await run(models)
    assert models.calls == ["cheap", "mid", "top"]
    assert outcome.answer.model == "top"
    tiers = [line for line in outcome.lines if line.stage is StageName.TIER]
    assert [line.outcome for line in tiers] == [Outcome.REJECTED, Outcome.REJECTED, Outcome.USED]
    assert "finish_reason" in tiers[0].detail and "refusal" in tiers[1].detail
    assert sum(line.cost_nano_usd for line in outcome.lines) == 330


async def test_last_tier_is_accepted_even_when_a_gate_fails() -> None:
    models = FakeModels(
        {
            "cheap": answer(REFUSAL, "cheap"),
            "mid": answer(REFUSAL, "mid"),
            "top": answer("cut", "top", Finish.LENGTH),
        }
    )
    outcome, _ = await run(models)
    assert outcome.answer.model == "top"
    assert "although gate finish_reason failed" in outcome.lines[-2].detail


async def test_unavailable_tier_is_skipped() -> None:
    models = FakeModels({"cheap": unavailable("cheap"), "mid": answer("Paris.", "mid")})
    outcome, _ = await run(models)
    assert outcome.tier.index == 2
    assert outcome.lines[0].outcome is Outcome.SKIPPED


async def test_every_tier_unavailable_is_unavailable() -> None:
    models = FakeModels({m: unavailable(m) for m in ("cheap", "mid", "top")})
    with pytest.raises(Unavailable, match="no tier could be reached"):
        await run(models)


async def test_cost_cap_stops_escalation_and_keeps_the_answer() -> None:
    models = FakeModels({"cheap": answer(REFUSAL, "cheap", cost=500), "mid": answer("x", "mid")})
    outcome, _ = await run(models, max_cost=400)
    assert models.calls == ["cheap"]
    assert outcome.answer.model == "cheap"
    assert "max_cost was reached" in outcome.lines[0].detail


async def test_streaming_yields_deltas_with_attempt_numbers() -> None:
    models = FakeModels({"cheap": answer(REFUSAL, "cheap"), "mid": answer("Paris is nice.", "mid")})
    outcome, deltas = await run(models, stream=True)
    assert all(isinstance(d, TierDelta) for d in deltas)
    assert {d.attempt for d in deltas} == {1, 2}
    assert "".join(d.text for d in deltas if d.attempt == 2).strip() == "Paris is nice."
    assert outcome.answer.model == "mid"


def test_budget_error_type() -> None:
    assert BudgetExhausted("x").code.name == "RESOURCE_EXHAUSTED"


def with_latency_budget(chat, tier_index: int, budget_s: float):
    tiers = tuple(
        replace(t, latency_budget_s=budget_s) if t.index == tier_index else t
        for t in chat.model_class.tiers
    )
    return replace(chat, model_class=replace(chat.model_class, tiers=tiers))


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tier_over_its_latency_budget_escalates_and_its_prompt_still_costs(
    stream: bool,
) -> None:
    models = FakeModels(
        {"cheap": answer("slow", "cheap"), "mid": answer("Paris.", "mid")}, delays={"cheap": 5.0}
    )
    chat = with_latency_budget(request(), 1, 0.05)
    cascade = Cascade(models, TRACER, prompt_cost=lambda model, turns: 77)
    started = time.monotonic()
    events = [e async for e in cascade.run(chat, chat.turns, time.monotonic() + 10, stream=stream)]
    assert time.monotonic() - started < 2
    outcome = events[-1]
    assert isinstance(outcome, CascadeOutcome)
    assert outcome.answer.model == "mid"
    first = outcome.lines[0]
    assert first.outcome is Outcome.SKIPPED and "latency budget of 0.05s ran out" in first.detail
    assert first.cost_nano_usd == 77


def every_tier_times_out(chat, budget_s: float = 0.02):
    for tier in chat.model_class.tiers:
        chat = with_latency_budget(chat, tier.index, budget_s)
    return chat


async def test_when_no_tier_answers_the_error_carries_what_the_attempts_cost() -> None:
    models = FakeModels(
        {"cheap": answer("slow", "cheap"), "mid": unavailable("mid"), "top": answer("x", "top")},
        delays={"cheap": 5.0, "top": 5.0},
    )
    chat = every_tier_times_out(request())
    cascade = Cascade(models, TRACER, prompt_cost=lambda model, turns: 77)
    with pytest.raises(NoTierAnswered, match="no tier could be reached") as raised:
        [e async for e in cascade.run(chat, chat.turns, time.monotonic() + 10, stream=False)]
    # Two prompts ran past their budgets (and are billed by the provider); the down tier is free.
    assert raised.value.spent_nano_usd == 2 * 77
    assert raised.value.code.name == "UNAVAILABLE"


async def test_answers_within_the_latency_budget_are_kept() -> None:
    models = FakeModels({"cheap": answer("Paris.", "cheap")}, delays={"cheap": 0.01})
    chat = with_latency_budget(request(), 1, 2.0)
    outcome, _ = await run_with(models, chat)
    assert outcome.answer.model == "cheap"


async def run_with(models, chat):
    events = [
        e
        async for e in Cascade(models, TRACER).run(
            chat, chat.turns, time.monotonic() + 5, stream=False
        )
    ]
    return events[-1], events[:-1]

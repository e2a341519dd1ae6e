"""RouteLLM curve metrics, the fit-half signal fit, and the committed routellm policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks.common import DEFAULT_DATA
from benchmarks.routellm_curves import (
    GSM8K_SETTINGS,
    Case,
    MtJudged,
    Pricer,
    apgr,
    conversation_cost,
    curve,
    fit_logistic,
    full_curve,
    gsm8k_cases,
    share_to_reach,
)
from benchmarks.routing_routellm import (
    POLICY_FILE,
    answer_scores,
    fit_weights,
    policy_document,
    threshold_for,
)
from shared.pricing import load_catalogue
from shared.tokens import TokenCounter

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "routellm"
DATA = DEFAULT_DATA / "routellm-evals"


def cases(weak: list[float], strong: list[float]) -> list[Case]:
    return [
        Case(f"q{i}", w, s, "", 1.0, 10.0)
        for i, (w, s) in enumerate(zip(weak, strong, strict=True))
    ]


def test_apgr_is_one_for_a_perfect_ranking_and_about_half_for_none() -> None:
    # Ten prompts: the strong model fixes the first five, the weak one is right on the rest.
    held = cases([0.0] * 5 + [1.0] * 5, [1.0] * 10)
    perfect = np.array([0.0] * 5 + [1.0] * 5)  # low score = escalate
    points = curve(held, perfect)
    assert apgr(points, 0.5, 1.0) == pytest.approx(0.75)  # gap closed at 50% of calls
    assert share_to_reach(full_curve(held, perfect), 0.75) == pytest.approx(0.3)
    backwards = 1.0 - perfect
    assert apgr(curve(held, backwards), 0.5, 1.0) == pytest.approx(0.25)


def test_cascade_cost_pays_the_cheap_call_always_and_a_router_does_not() -> None:
    held = cases([0.0, 1.0], [1.0, 1.0])
    score = np.array([0.0, 1.0])
    assert full_curve(held, score).cost.tolist() == [1.0, 6.0, 11.0]
    assert full_curve(held, score, cascade=False).cost.tolist() == [1.0, 5.5, 10.0]


def test_logistic_fit_is_deterministic_and_finds_the_sign() -> None:
    x = np.array([[0.0], [0.0], [1.0], [1.0], [0.0], [1.0]])
    y = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    first, second = fit_logistic(x, y), fit_logistic(x, y)
    assert first.tolist() == second.tolist()
    assert first[1] < 0


def test_gsm8k_cases_leave_contaminated_prompts_out_and_price_both_models() -> None:
    loaded = gsm8k_cases(FIXTURE, Pricer(load_catalogue(), TokenCounter()))
    assert [c.weak_quality for c in loaded] == [1.0, 0.0]
    assert all(0 < c.weak_cost < c.strong_cost for c in loaded)


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data/routellm-evals")
def test_committed_policy_matches_a_refit_on_the_fit_half() -> None:
    every = gsm8k_cases(DATA, Pricer(load_catalogue(), TokenCounter()))
    weights = fit_weights(every, GSM8K_SETTINGS)
    fit = [c for c in every if c.fit]
    threshold = threshold_for(fit, answer_scores(fit, weights, GSM8K_SETTINGS), 0.8)
    expected = policy_document({"gsm8k": (weights, threshold)})
    committed = yaml.safe_load(POLICY_FILE.read_text())
    gsm8k = committed["tenants"]["routellm"]["model_classes"]["gsm8k"]
    want = expected["tenants"]["routellm"]["model_classes"]["gsm8k"]
    assert gsm8k["gate_settings"] == want["gate_settings"]
    assert gsm8k["tiers"] == want["tiers"]


def test_a_conversation_bills_turn_two_with_turn_one_and_its_answer_in_context() -> None:
    pricer = Pricer(load_catalogue(), TokenCounter())
    model = "gpt-4-1106-preview"
    turns = ["Write a haiku about rain.", "Now make it about snow."]
    answers = [MtJudged(a, 5.0, "", "") for a in ("Rain on the roof.", "Snow on the roof.")]

    billed = conversation_cost(pricer, model, turns, answers)

    first = pricer.cost(model, turns[0], answers[0].answer)
    second = pricer.cost(model, turns[0] + answers[0].answer + turns[1], answers[1].answer)
    assert billed == pytest.approx(first + second)
    # Turn 2 re-sends the whole conversation, so it costs more than turn 2 alone.
    assert billed > first + pricer.cost(model, turns[1], answers[1].answer)

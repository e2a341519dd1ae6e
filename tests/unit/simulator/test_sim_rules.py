"""Scripted rules: the default rules, rule order, model scope, repeat and finish_reason."""

from __future__ import annotations

import re

import pytest

from services.simulator.answers import AnswerBook
from services.simulator.scenario import ModelSpec, Rule
from tests.unit.simulator.helpers import CHEAP, DEFAULT_MODELS, chat, make_client, token_counter

REFUSAL = "I'm sorry, but I can't help with that."


@pytest.mark.parametrize("model", DEFAULT_MODELS)
async def test_capital_of_france_is_paris_from_every_model(model):
    async with make_client() as client:
        body = (await chat(client, "What is the capital of France?", model=model)).json()
    assert body["choices"][0]["message"]["content"] == "The capital of France is Paris."
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == token_counter().count(
        "The capital of France is Paris."
    )


async def test_cheapest_model_refuses_on_the_marker_and_others_do_not():
    prompt = "Write me a limerick about routers. [sim:refuse]"
    async with make_client() as client:
        cheap = (await chat(client, prompt, model=CHEAP)).json()
        strong = (await chat(client, prompt, model="gpt-4o")).json()
    assert cheap["choices"][0]["message"]["content"] == REFUSAL
    assert cheap["choices"][0]["finish_reason"] == "stop"
    assert strong["choices"][0]["message"]["content"] != REFUSAL
    assert "gpt-4o" in strong["choices"][0]["message"]["content"]


async def test_cheapest_model_truncates_on_the_marker_at_its_output_cap():
    prompt = "Explain the proof in detail. [sim:truncate]"
    async with make_client() as client:
        capped = (await chat(client, prompt, model=CHEAP)).json()
        limited = (await chat(client, prompt, model=CHEAP, max_tokens=64)).json()
        strong = (await chat(client, prompt, model="deepseek-reasoner")).json()
    assert capped["choices"][0]["finish_reason"] == "length"
    assert capped["usage"]["completion_tokens"] == 512  # Qwen3-8B's max_output_tokens
    assert capped["choices"][0]["message"]["content"].startswith("Let me start by restating")
    assert limited["choices"][0]["finish_reason"] == "length"
    assert limited["usage"]["completion_tokens"] == 64
    assert strong["choices"][0]["finish_reason"] == "stop"


def _book(*rules: Rule) -> AnswerBook:
    return AnswerBook(rules, token_counter())


MODEL = ModelSpec("m", mean_output_tokens=50)


def test_first_matching_rule_wins_and_model_scope_is_respected():
    book = _book(
        Rule(re.compile("hello"), "scoped", models=frozenset({"other"})),
        Rule(re.compile("hel+o"), "first"),
        Rule(re.compile("hello"), "second"),
    )
    assert book.answer(MODEL, "well hello there", None).text == "first"


def test_rule_repeat_model_placeholder_and_finish_reason():
    book = _book(
        Rule(re.compile("x"), "{model} says hi.", finish_reason="content_filter", repeat=3)
    )
    answer = book.answer(MODEL, "x", None)
    assert answer.text == "m says hi. m says hi. m says hi."
    assert answer.finish_reason == "content_filter"


def test_a_rule_answer_over_the_cap_finishes_with_length():
    book = _book(Rule(re.compile("x"), "word " * 50))
    answer = book.answer(ModelSpec("m", 10, max_output_tokens=20), "x", max_tokens=None)
    assert answer.finish_reason == "length"
    assert answer.completion_tokens == 20
    assert book.answer(MODEL, "x", max_tokens=5).completion_tokens == 5


def test_no_rule_means_synthetic_prose():
    book = _book(Rule(re.compile("never-matches"), "nope"))
    model = ModelSpec("model-under-test", mean_output_tokens=60)
    answer = book.answer(model, "Tell me about bridges", None)
    assert answer.text != "nope"
    assert "model-under-test" in answer.text
    assert "bridges" in answer.text
    assert answer.finish_reason == "stop"
    assert answer.completion_tokens == token_counter().count(answer.text)

"""Token logprobs from the simulator: only when asked, deterministic, low for `unsure` rules."""

from __future__ import annotations

from statistics import mean

import pytest

from services.simulator.scenario import ScenarioError, load_scenario, parse_rule
from tests.unit.simulator.helpers import CHEAP, chat, make_client, sse_payloads

UNSURE = "Which option is right? [sim:unsure]"


def values(body: dict) -> list[float]:
    return [item["logprob"] for item in body["choices"][0]["logprobs"]["content"]]


async def test_logprobs_come_only_when_asked_and_cover_every_word() -> None:
    async with make_client() as client:
        plain = (await chat(client, "Explain DNS", model=CHEAP)).json()
        asked = (await chat(client, "Explain DNS", model=CHEAP, logprobs=True)).json()
        again = (await chat(client, "Explain DNS", model=CHEAP, logprobs=True)).json()
    assert plain["choices"][0]["logprobs"] is None
    content = asked["choices"][0]["logprobs"]["content"]
    text = asked["choices"][0]["message"]["content"]
    assert "".join(item["token"] for item in content) == text
    assert all(-0.25 <= v < 0 for v in values(asked))
    assert values(asked) == values(again)


async def test_an_unsure_answer_has_low_logprobs_and_others_do_not() -> None:
    async with make_client() as client:
        unsure = (await chat(client, UNSURE, model=CHEAP, logprobs=True)).json()
        strong = (await chat(client, UNSURE, model="gpt-4o", logprobs=True)).json()
    assert unsure["choices"][0]["message"]["content"] == "It might be B, but I am not sure."
    assert mean(values(unsure)) < -0.6 < mean(values(strong))


async def test_a_stream_carries_each_pieces_logprobs() -> None:
    async with make_client() as client:
        whole = (await chat(client, UNSURE, model=CHEAP, logprobs=True)).json()
        response = await chat(client, UNSURE, model=CHEAP, logprobs=True, stream=True)
    chunks = [p for p in sse_payloads(response.text) if p != "[DONE]" and p["choices"]]
    streamed = [
        item["logprob"]
        for p in chunks
        if p["choices"][0]["logprobs"]
        for item in p["choices"][0]["logprobs"]["content"]
    ]
    assert streamed == values(whole)


async def test_logprobs_must_be_a_boolean() -> None:
    async with make_client() as client:
        response = await chat(client, "hi", model=CHEAP, logprobs="yes")
    assert response.status_code == 400
    assert "'logprobs' must be true or false" in response.json()["error"]["message"]


async def test_the_judge_rules_give_deterministic_verdicts() -> None:
    def judged(question: str) -> str:
        return f"Question:\n{question}\n\nAnswer:\nB\n\nCorrect and complete?"

    async with make_client() as client:
        replies = [
            (await chat(client, judged(q), model=CHEAP)).json()["choices"][0]["message"]["content"]
            for q in ("Pick one", "Pick one [sim:judge-no]", "Pick one [sim:judge-garbled]")
        ]
    assert replies[:2] == ["yes", "no"]
    assert replies[2] not in ("yes", "no")


def test_a_rule_unsure_flag_must_be_a_boolean() -> None:
    models = load_scenario().models
    rule = parse_rule(0, {"match": "x", "answer": "y", "unsure": True}, models)
    assert rule.unsure
    with pytest.raises(ScenarioError, match=r"rules\[3\].unsure must be true or false"):
        parse_rule(3, {"match": "x", "answer": "y", "unsure": "yes"}, models)

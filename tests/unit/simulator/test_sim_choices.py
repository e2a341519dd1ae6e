"""n, seed, temperature, stop, system_fingerprint and top_logprobs."""

from __future__ import annotations

from openai.types.chat import ChatCompletion

from tests.unit.simulator.helpers import chat, make_client, token_counter

PROMPT = "How do tides work on a planet with two moons?"


def texts(body: dict) -> list[str]:
    ChatCompletion.model_validate(body)
    return [choice["message"]["content"] for choice in body["choices"]]


async def test_n_choices_differ_when_sampling_and_usage_counts_them_all() -> None:
    async with make_client() as client:
        body = (await chat(client, PROMPT, n=3, temperature=1.0)).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    answers = texts(body)
    assert len(set(answers)) == 3
    assert body["usage"]["completion_tokens"] == sum(token_counter().count(a) for a in answers)


async def test_n_choices_are_identical_at_temperature_zero() -> None:
    async with make_client() as client:
        body = (await chat(client, PROMPT, n=2, temperature=0)).json()
    first, second = texts(body)
    assert first == second


async def test_the_same_seed_repeats_an_answer_and_another_seed_changes_it() -> None:
    async with make_client() as client:
        first = (await chat(client, PROMPT, seed=11, temperature=0.8)).json()
        again = (await chat(client, PROMPT, seed=11, temperature=0.8, region="eu-west")).json()
        other = (await chat(client, PROMPT, seed=12, temperature=0.8)).json()
    assert texts(first) == texts(again)
    assert texts(other) != texts(first)
    assert first["system_fingerprint"].startswith("fp_")
    assert first["system_fingerprint"] == again["system_fingerprint"]


async def test_stop_cuts_the_answer_before_the_first_stop_sequence() -> None:
    async with make_client() as client:
        plain = (await chat(client, PROMPT)).json()
        body = (await chat(client, PROMPT, stop=["\n\n", "zzz"])).json()
    whole = texts(plain)[0]
    [cut] = texts(body)
    assert cut == whole.split("\n\n")[0]
    assert len(cut) < len(whole)
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == token_counter().count(cut)
    # As vLLM does, the choice names the sequence it stopped at; OpenAI's own API names none.
    assert body["choices"][0]["stop_reason"] == "\n\n"
    assert "stop_reason" not in plain["choices"][0]


async def test_top_logprobs_lists_the_token_then_likelier_alternatives_in_order() -> None:
    async with make_client() as client:
        body = (await chat(client, PROMPT, logprobs=True, top_logprobs=5)).json()
    ChatCompletion.model_validate(body)
    logprobs = body["choices"][0]["logprobs"]
    assert logprobs["refusal"] is None
    for entry in logprobs["content"]:
        top = entry["top_logprobs"]
        assert len(top) == 5
        assert top[0]["token"] == entry["token"] and top[0]["logprob"] == entry["logprob"]
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        assert len({t["token"] for t in top}) == 5
        assert all(t["bytes"] == list(t["token"].encode()) for t in top)

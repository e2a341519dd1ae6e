"""Non-streaming chat completions: body shape, usage, synthetic answers and max_tokens."""

from __future__ import annotations

from services.simulator.app import REGION_HEADER
from tests.unit.simulator.helpers import (
    DEFAULT_MODELS,
    RecordingSleep,
    chat,
    make_client,
    token_counter,
)

PROMPT = "How do tides work on a planet with two moons?"


async def test_completion_has_the_openai_shape_and_usage():
    async with make_client() as client:
        response = await chat(client, PROMPT, model="deepseek-v4-flash", region="eu-west")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers[REGION_HEADER] == "eu-west"
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    assert body["model"] == "deepseek-v4-flash"
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    content = choice["message"]["content"]
    usage = body["usage"]
    assert usage["prompt_tokens"] == token_counter().count_chat([PROMPT])
    assert usage["completion_tokens"] == token_counter().count(content)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert "cost" not in usage  # only recorded (replay) answers report a cost


async def test_synthetic_answer_is_deterministic_names_the_model_and_is_about_mean_length():
    async with make_client() as client:
        first = (await chat(client, PROMPT, model="gpt-4o")).json()
        again = (await chat(client, PROMPT, model="gpt-4o", region="ap-south")).json()
        other = (await chat(client, PROMPT, model="deepseek-reasoner")).json()
    text = first["choices"][0]["message"]["content"]
    assert text == again["choices"][0]["message"]["content"]
    assert "gpt-4o" in text
    assert "tides work" in text  # the prompt's topic is echoed, so answers read as replies
    assert other["choices"][0]["message"]["content"] != text
    # gpt-4o's mean_output_tokens is 200; lengths vary within +-25% plus one sentence.
    assert 130 <= first["usage"]["completion_tokens"] <= 280


async def test_every_default_model_answers_in_every_default_region():
    async with make_client() as client:
        for region in ("us-east", "eu-west", "ap-south"):
            for model in DEFAULT_MODELS:
                response = await chat(client, PROMPT, model=model, region=region)
                assert response.status_code == 200, (region, model, response.text)


async def test_max_tokens_cuts_the_answer_and_finishes_with_length():
    async with make_client() as client:
        full = (await chat(client, PROMPT, model="gpt-4o")).json()
        cut = (await chat(client, PROMPT, model="gpt-4o", max_tokens=10)).json()
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 10
    cut_text = cut["choices"][0]["message"]["content"]
    assert full["choices"][0]["message"]["content"].startswith(cut_text)
    assert token_counter().count(cut_text) == 10


async def test_max_completion_tokens_wins_over_max_tokens():
    async with make_client() as client:
        body = (await chat(client, PROMPT, max_tokens=50, max_completion_tokens=5)).json()
    assert body["usage"]["completion_tokens"] == 5
    assert body["choices"][0]["finish_reason"] == "length"


async def test_max_tokens_above_the_answer_length_changes_nothing():
    async with make_client() as client:
        body = (await chat(client, PROMPT, max_tokens=4000)).json()
    assert body["choices"][0]["finish_reason"] == "stop"


async def test_multi_part_content_and_the_last_user_message_are_used():
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Tell me about otters."},
        {"role": "assistant", "content": "Otters are mustelids."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is the capital "},
                {"type": "text", "text": "of France?"},
            ],
        },
    ]
    async with make_client() as client:
        response = await client.post(
            "/us-east/v1/chat/completions", json={"model": "gpt-4o", "messages": messages}
        )
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "The capital of France is Paris."
    expected_prompt = token_counter().count_chat(
        [
            "You are terse.",
            "Tell me about otters.",
            "Otters are mustelids.",
            "What is the capital of France?",
        ]
    )
    assert body["usage"]["prompt_tokens"] == expected_prompt


async def test_models_lists_the_scenario_models():
    async with make_client() as client:
        response = await client.get("/ap-south/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [entry["id"] for entry in body["data"]] == list(DEFAULT_MODELS)
    assert all(entry["object"] == "model" for entry in body["data"])


async def test_latency_model_waits_ttft_plus_per_token_time():
    sleep = RecordingSleep()
    async with make_client(latency_scale=1.0, sleep=sleep) as client:
        body = (await chat(client, PROMPT, region="us-east")).json()
    [waited] = sleep.calls
    # us-east: ttft median 15 ms (p99 40 ms), 0.05 ms per token.
    per_token_s = 0.05 / 1000 * body["usage"]["completion_tokens"]
    assert 0.002 < waited - per_token_s < 0.2


async def test_latency_scale_zero_never_sleeps():
    sleep = RecordingSleep()
    async with make_client(latency_scale=0.0, sleep=sleep) as client:
        await chat(client, PROMPT)
        await chat(client, PROMPT, stream=True)
    assert sleep.calls == []

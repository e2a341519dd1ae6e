"""Replay mode: RouterBench CSVs loaded and served back with their recorded cost."""

from __future__ import annotations

import pytest

from services.simulator.replay import ReplayError, load_replay_dir, normalise_prompt
from tests.unit.simulator.helpers import (
    DEFAULT_MODELS,
    FIXTURES,
    chat,
    make_client,
    replay_book,
    sse_payloads,
    token_counter,
)

GPT4 = "gpt-4-1106-preview"
MISTRAL = "mistralai/mistral-7b-chat"
ADD = "Write a python function to add two numbers."
TROPHY = (
    "Please answer with the letter of the correct answer.\n\nThe trophy didn't fit in the "
    "suitcase because _ was too big.\nA) trophy\nB) suitcase\nAnswer:"
)


def test_loader_reads_every_csv_and_keeps_the_model_columns():
    book = replay_book()
    assert book.models == (GPT4, MISTRAL)
    assert len(book) == 4  # three prompts in tiny_test.csv, one in tiny_train.csv
    recording = book.lookup(ADD, GPT4)
    assert recording is not None
    assert recording.response == "```python\ndef add(a, b):\n    return a + b\n```"
    assert recording.cost_usd == 0.00123
    train = book.lookup("Write a python function to reverse a string.", MISTRAL)
    assert train is not None and train.cost_usd == 3e-05


def test_lookup_is_whitespace_normalised_and_misses_are_none():
    book = replay_book()
    reflowed = (
        "  Please answer with the letter of the correct answer.  The trophy didn't fit in "
        "the suitcase\tbecause _ was too big. A) trophy B) suitcase Answer:\n"
    )
    assert normalise_prompt(reflowed) == normalise_prompt(TROPHY)
    assert book.lookup(reflowed, GPT4) is not None
    assert book.lookup(TROPHY, MISTRAL) is None  # empty cells: that model has no result
    assert book.lookup("never asked", GPT4) is None
    # A two-element prompt list: the first element is the prompt.
    oxygen = book.lookup("Which gas do plants absorb?", MISTRAL)
    assert oxygen is not None
    assert oxygen.response == "Oxygen."


async def test_replayed_answer_carries_the_recorded_response_and_cost():
    async with make_client(replay=replay_book()) as client:
        response = await chat(client, ADD, model=GPT4, region="eu-west")
    assert response.status_code == 200
    body = response.json()
    content = body["choices"][0]["message"]["content"]
    assert content == "```python\ndef add(a, b):\n    return a + b\n```"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["model"] == GPT4
    assert body["usage"] == {
        "prompt_tokens": token_counter().count_chat([ADD]),
        "completion_tokens": token_counter().count(content),
        "total_tokens": token_counter().count_chat([ADD]) + token_counter().count(content),
        "cost": 0.00123,
    }


async def test_replayed_stream_ends_with_usage_including_cost():
    async with make_client(replay=replay_book()) as client:
        response = await chat(
            client, ADD, model=MISTRAL, stream=True, stream_options={"include_usage": True}
        )
    payloads = sse_payloads(response.text)
    text = "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads[:-2])
    assert text == "def add(a, b): return a + b"
    assert payloads[-2]["usage"]["cost"] == 4.2e-05


async def test_prompt_without_a_recording_is_404_no_recorded_answer():
    async with make_client(replay=replay_book()) as client:
        unknown_prompt = await chat(client, "What is the capital of France?", model=GPT4)
        missing_cell = await chat(client, TROPHY, model=MISTRAL)
        stats = (await client.get("/admin/stats")).json()
    for response in (unknown_prompt, missing_cell):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "no_recorded_answer"
    assert stats["models"][MISTRAL]["rejected"] == 1


async def test_replay_mode_keeps_scenario_models_on_rules_and_lists_all_models():
    async with make_client(replay=replay_book()) as client:
        paris = await chat(client, "What is the capital of France?", model="gpt-4o")
        models = (await client.get("/us-east/v1/models")).json()
    assert paris.json()["choices"][0]["message"]["content"] == "The capital of France is Paris."
    assert [m["id"] for m in models["data"]] == [*DEFAULT_MODELS, GPT4, MISTRAL]


async def test_replayed_answer_honours_max_tokens():
    async with make_client(replay=replay_book()) as client:
        body = (await chat(client, ADD, model=GPT4, max_tokens=3)).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3
    assert body["usage"]["cost"] == 0.00123


def test_bad_replay_directories_are_reported(tmp_path):
    with pytest.raises(ReplayError, match="does not exist"):
        load_replay_dir(tmp_path / "missing")
    with pytest.raises(ReplayError, match="holds no"):
        load_replay_dir(tmp_path)
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    with pytest.raises(ReplayError, match="no 'prompt' column"):
        load_replay_dir(tmp_path)


def test_malformed_rows_name_the_file_and_line(tmp_path):
    text = (FIXTURES / "tiny_test.csv").read_text(encoding="utf-8")
    broken = text.replace("0.00123", "cheap", 1)
    (tmp_path / "zz_broken.csv").write_text(broken, encoding="utf-8")
    with pytest.raises(ReplayError, match=r"zz_broken.csv line 2 gpt-4-1106-preview\|total_cost"):
        load_replay_dir(tmp_path)
    (tmp_path / "zz_broken.csv").write_text(
        text.replace("['Write a python", "Write a python", 1), encoding="utf-8"
    )
    with pytest.raises(ReplayError, match=r"zz_broken\.csv line 2 prompt"):
        load_replay_dir(tmp_path)

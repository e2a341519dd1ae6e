"""Replay of a RouteLLM evaluation folder: both models' answers, contaminated prompts left out,
no recorded cost (the gateway prices from its catalogue)."""

from __future__ import annotations

from pathlib import Path

from services.simulator.replay import load_replay_dir
from services.simulator.replay_routellm import MODEL_NAMES
from tests.unit.simulator.helpers import chat, make_client

FOLDER = Path(__file__).resolve().parents[2] / "fixtures" / "routellm"
MIXTRAL = "mistralai/mixtral-8x7b-chat"
GPT4 = "gpt-4-1106-preview"


def test_gsm8k_answers_of_both_models_are_served_under_catalogue_names() -> None:
    book = load_replay_dir(FOLDER)
    assert book.models == (MIXTRAL, GPT4) == tuple(MODEL_NAMES.values())
    pens = "A pen costs $2.  How much do 5 pens cost?"  # reflowed: whitespace-normalised
    weak, strong = book.lookup(pens, MIXTRAL), book.lookup(pens, GPT4)
    assert weak is not None and weak.response == "5 * 2 = 12\n#### 12"
    assert strong is not None and strong.response == "5 pens cost 5 * $2 = $10."
    assert weak.cost_usd is None  # priced by the gateway, not recorded


def test_contaminated_prompts_are_not_served() -> None:
    book = load_replay_dir(FOLDER)
    assert book.lookup("Leaked question: what is 1 + 1?", GPT4) is None
    # A contaminated MT-Bench question is dropped with both its turns.
    assert book.lookup("Leaked: what is 2 + 2?", MIXTRAL) is None
    assert book.lookup("And 3 + 3?", MIXTRAL) is None
    assert len(book) == 2 + 2  # two GSM8K questions, one MT-Bench question's two turns


def test_mt_bench_turns_come_out_of_the_judge_prompts() -> None:
    book = load_replay_dir(FOLDER)
    first, second = book.lookup("Name a colour.", GPT4), book.lookup("Now name another.", GPT4)
    assert first is not None and first.response == "Red, a warm colour."
    assert second is not None and second.response == "Yellow, like the sun."
    mixtral_second = book.lookup("Now name another.", MIXTRAL)
    assert mixtral_second is not None and mixtral_second.response == "Green."


async def test_the_simulator_serves_a_recording_without_a_cost() -> None:
    async with make_client(replay=load_replay_dir(FOLDER)) as client:
        reply = await chat(client, "Name a colour.", model=MIXTRAL)
    assert reply.status_code == 200
    body = reply.json()
    assert body["choices"][0]["message"]["content"] == "Blue."
    assert "cost" not in body["usage"] and body["usage"]["completion_tokens"] > 0

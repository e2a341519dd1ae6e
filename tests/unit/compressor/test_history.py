"""History trimming keeps the system prompt and the last turns, and summarises the rest."""

from __future__ import annotations

import pytest

from services.compressor.history import SUMMARY_HEADER, HistoryStrategy
from services.compressor.strategies import ExtractiveStrategy
from shared.chat import Role, Turn
from shared.tokens import TokenCounter

from .fakes import FakeSummariser, HashingEmbedder

SYSTEM = Turn(Role.SYSTEM, "You are the harbour office assistant.")


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def chat(pairs: int) -> tuple[Turn, ...]:
    turns = [SYSTEM]
    for n in range(pairs):
        turns.append(Turn(Role.USER, f"Where is crate {n}? " + "Some detail. " * 30))
        turns.append(Turn(Role.ASSISTANT, f"Crate {n} is in shed {n + 10}. " + "More. " * 30))
    turns.append(Turn(Role.USER, "And where is crate 3?"))
    return tuple(turns)


async def test_keeps_system_and_last_turns_and_counts_the_summary_cost(
    counter: TokenCounter,
) -> None:
    summariser = FakeSummariser("Crates 0-5 are in sheds 10-15.", cost_nano_usd=777)
    strategy = HistoryStrategy(ExtractiveStrategy(HashingEmbedder(), counter), counter, summariser)
    turns = chat(6)
    result = await strategy.trim(turns, 0.25, keep_last_turns=3)
    assert result.turns[0] == SYSTEM
    assert result.turns[1] == Turn(Role.SYSTEM, f"{SUMMARY_HEADER}\nCrates 0-5 are in sheds 10-15.")
    assert result.turns[2:] == turns[-3:]
    assert result.cost_nano_usd == 777
    transcript, question, _ = summariser.calls[0]
    assert question == "And where is crate 3?"
    assert transcript.startswith("user: Where is crate 0?")
    assert "summarised by Qwen/Qwen3-8B" in result.detail


async def test_without_a_summary_older_turns_are_extracted_with_a_reason(
    counter: TokenCounter,
) -> None:
    summariser = FakeSummariser(fail="dispatcher answered UNAVAILABLE: down")
    strategy = HistoryStrategy(ExtractiveStrategy(HashingEmbedder(), counter), counter, summariser)
    turns = chat(6)
    result = await strategy.trim(turns, 0.25, keep_last_turns=2)
    assert result.turns[0] == SYSTEM
    assert result.turns[-2:] == turns[-2:]
    folded = result.turns[1].content
    assert folded.startswith(SUMMARY_HEADER)
    assert "Crate 3 is in shed 13." in folded  # the older answer the question needs
    assert len(folded) < sum(len(t.content) for t in turns[1:-2]) / 2
    assert result.cost_nano_usd == 0
    assert "extracted (the summary failed (dispatcher answered UNAVAILABLE: down))" in result.detail


async def test_short_history_is_left_alone(counter: TokenCounter) -> None:
    strategy = HistoryStrategy(ExtractiveStrategy(HashingEmbedder(), counter), counter)
    turns = chat(1)
    result = await strategy.trim(turns, 0.25, keep_last_turns=4)
    assert result.turns == turns
    assert "nothing older than the last 4 turns" in result.detail

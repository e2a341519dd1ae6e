"""ExtractiveStrategy with a bag-of-words embedder: what it keeps, in what order, within budget."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from services.compressor.strategies import (
    KEEP_WHOLE_BELOW_TOKENS,
    ExtractiveStrategy,
    StrategyResult,
)
from shared.chat import Role, Turn
from shared.errors import DeadlineExceeded
from shared.tokens import TokenCounter

from .fakes import HashingEmbedder

FILLER = [
    f"Filler sentence {i} talks about {topic} and nothing else of note."
    for i, topic in enumerate(
        [
            "weather",
            "harbours",
            "pottery",
            "trains",
            "gardens",
            "bicycles",
            "chess",
            "volcanoes",
            "rivers",
            "clocks",
            "bread",
            "tulips",
            "violins",
            "glaciers",
            "owls",
            "kites",
            "marbles",
            "lanterns",
            "ferries",
            "deserts",
        ]
    )
]
ANSWER = "The lighthouse door was painted bright green by Elena Vasquez in 1931."
QUESTION = "What colour did Elena Vasquez paint the lighthouse door?"


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


@pytest.fixture
def strategy(counter: TokenCounter) -> ExtractiveStrategy:
    return ExtractiveStrategy(HashingEmbedder(), counter)


def document(answer_at: int = 11) -> str:
    sentences = [*FILLER[:answer_at], ANSWER, *FILLER[answer_at:]]
    return " ".join(sentences[:8]) + "\n\n" + " ".join(sentences[8:])


def run(strategy: ExtractiveStrategy, turns: list[Turn], ratio: float) -> StrategyResult:
    return strategy.compress_blocking(tuple(turns), ratio)


def test_keeps_the_answer_and_the_question(strategy: ExtractiveStrategy) -> None:
    text = f"{document()}\n\n{QUESTION}"
    result = run(strategy, [Turn(Role.USER, text)], 0.25)
    content = result.turns[0].content
    assert ANSWER in content
    assert content.endswith(QUESTION)
    assert len(content) < len(text) / 2


@pytest.mark.parametrize("answer_at", [0, 7, 8, 20])
def test_keeps_chunks_in_original_order(strategy: ExtractiveStrategy, answer_at: int) -> None:
    text = f"{document(answer_at)}\n\n{QUESTION}"
    content = run(strategy, [Turn(Role.USER, text)], 0.4).turns[0].content
    kept = [s for s in [*FILLER, ANSWER] if s in content]
    assert ANSWER in kept
    assert len(kept) > 3
    assert sorted(kept, key=content.index) == sorted(kept, key=text.index)


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.6, 0.9])
def test_respects_the_budget(
    strategy: ExtractiveStrategy, counter: TokenCounter, ratio: float
) -> None:
    doc = document()
    text = f"{doc}\n\n{QUESTION}"
    content = run(strategy, [Turn(Role.USER, text)], ratio).turns[0].content
    kept_context = content[: -len(QUESTION)]
    # The budget counts chunk by chunk; joining adds at most a few separator tokens.
    assert counter.count(kept_context) <= ratio * counter.count(doc) + 4


def test_question_at_the_start_of_the_turn_is_kept(strategy: ExtractiveStrategy) -> None:
    text = f"{QUESTION}\n\n{document()}\n\nThat is all the material there is for this."
    content = run(strategy, [Turn(Role.USER, text)], 0.2).turns[0].content
    assert content.startswith(QUESTION)
    assert ANSWER in content


def test_bare_answer_cue_does_not_hide_the_question(strategy: ExtractiveStrategy) -> None:
    text = f"{document()}\n\nQuestion: {QUESTION}\n\nAnswer:"
    content = run(strategy, [Turn(Role.USER, text)], 0.2).turns[0].content
    assert content.endswith(f"Question: {QUESTION}\n\nAnswer:")
    assert ANSWER in content


def test_short_system_prompt_and_short_turns_stay_verbatim(
    strategy: ExtractiveStrategy, counter: TokenCounter
) -> None:
    system = "You are a careful assistant. Answer only from the documents. " * 8
    assert counter.count(system) < KEEP_WHOLE_BELOW_TOKENS
    turns = [
        Turn(Role.SYSTEM, system),
        Turn(Role.USER, document()),
        Turn(Role.ASSISTANT, "I have read the document."),
        Turn(Role.USER, QUESTION),
    ]
    result = run(strategy, turns, 0.2)
    assert result.turns[0] == turns[0]
    assert result.turns[2:] == tuple(turns[2:])
    assert ANSWER in result.turns[1].content
    assert len(result.turns[1].content) < len(turns[1].content) / 2


def test_long_messages_of_any_role_are_context(strategy: ExtractiveStrategy) -> None:
    turns = [
        Turn(Role.SYSTEM, document(3)),
        Turn(Role.ASSISTANT, " ".join(FILLER) * 2, name="notes"),
        Turn(Role.USER, QUESTION),
    ]
    result = run(strategy, turns, 0.2)
    assert ANSWER in result.turns[0].content
    assert result.turns[1].name == "notes"
    # A turn is never emptied: it keeps at least its best chunk.
    assert result.turns[1].content.strip()
    assert len(result.turns[1].content) < len(turns[1].content) / 3


def test_a_tool_result_is_data_and_passes_whole(strategy: ExtractiveStrategy) -> None:
    turns = [
        Turn(Role.SYSTEM, document(3)),
        Turn(Role.TOOL, " ".join(FILLER) * 2, tool_call_id="call_1"),
        Turn(Role.USER, QUESTION),
    ]
    result = run(strategy, turns, 0.2)
    assert result.turns[1] == turns[1]
    assert len(result.turns[0].content) < len(turns[0].content)


def test_neighbour_of_the_best_chunk_is_preferred(strategy: ExtractiveStrategy) -> None:
    # "It was ..." shares no word with the question; only the neighbour bonus can pick it
    # over the equally unrelated filler.
    follow_up = "It was repainted every spring after that."
    text = " ".join([*FILLER[:10], ANSWER, follow_up, *FILLER[10:]]) + f"\n\n{QUESTION}"
    result = run(strategy, [Turn(Role.USER, text)], 0.15)
    assert f"{ANSWER} {follow_up}" in result.turns[0].content


def test_code_block_is_kept_or_dropped_whole(strategy: ExtractiveStrategy) -> None:
    code = "```python\n" + "\n".join(f"step_{i} = run_job({i})" for i in range(60)) + "\n```"
    text = f"{document()}\n\n{code}\n\n{QUESTION}"
    content = run(strategy, [Turn(Role.USER, text)], 0.3).turns[0].content
    assert "```" not in content or code in content
    assert content.count("```") in (0, 2)


def test_without_a_user_turn_nothing_changes(strategy: ExtractiveStrategy) -> None:
    turns = (Turn(Role.SYSTEM, document()),)
    result = strategy.compress_blocking(turns, 0.3)
    assert result.turns == turns
    assert "no user turn" in result.detail


def test_nothing_compressible_leaves_turns_alone(strategy: ExtractiveStrategy) -> None:
    turns = (Turn(Role.SYSTEM, "Be brief."), Turn(Role.USER, QUESTION))
    result = strategy.compress_blocking(turns, 0.3)
    assert result.turns == turns
    assert "nothing to drop" in result.detail


async def test_async_compress_matches_blocking(strategy: ExtractiveStrategy) -> None:
    turns = (Turn(Role.USER, f"{document()}\n\n{QUESTION}"),)
    result = await strategy.compress(turns, 0.3)
    assert result == strategy.compress_blocking(turns, 0.3)
    assert result.cost_nano_usd == 0
    assert strategy.ready


def test_gives_up_once_the_deadline_has_passed(strategy: ExtractiveStrategy) -> None:
    turns = (Turn(Role.USER, f"{document()}\n\n{QUESTION}"),)
    with pytest.raises(DeadlineExceeded):
        strategy.compress_blocking(turns, 0.3, deadline=time.monotonic() - 1)
    assert ANSWER in strategy.compress_blocking(turns, 0.3, time.monotonic() + 60).turns[0].content


class SlowEmbedder(HashingEmbedder):
    """Takes `per_text_s` of wall time per text, like a cold model on a long document."""

    def __init__(self, per_text_s: float) -> None:
        super().__init__()
        self._per_text_s = per_text_s

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        time.sleep(self._per_text_s * len(texts))
        return super().embed(texts)


def test_a_deadline_shorter_than_the_embedding_gives_a_partial_but_useful_compression(
    counter: TokenCounter,
) -> None:
    embedder = SlowEmbedder(per_text_s=0.005)
    strategy = ExtractiveStrategy(embedder, counter)
    filler = [f"{FILLER[i % len(FILLER)]} Note {i}." for i in range(600)]
    context = " ".join([*filler[:450], ANSWER, *filler[450:]])
    turns = (Turn(Role.USER, f"{context}\n\n{QUESTION}"),)
    started = time.monotonic()

    result = strategy.compress_blocking(turns, 0.1, deadline=started + 0.5)

    elapsed = time.monotonic() - started
    embedded = sum(len(call) for call in embedder.calls)
    # Embedding everything takes ~3 s at this pace; it stopped after a few slices.
    assert embedded < 300
    assert elapsed < 2.0
    assert "before the deadline" in result.detail
    # The answer shares the question's rare words, so BM25 put it in the first slice.
    assert ANSWER in result.turns[0].content
    assert QUESTION in result.turns[0].content

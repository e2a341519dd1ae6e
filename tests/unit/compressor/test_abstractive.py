"""Abstractive compression: summary cost counted, failures degrade to extraction with a reason."""

from __future__ import annotations

import pytest

from services.compressor.abstractive import AbstractiveStrategy
from services.compressor.compressor import (
    CompressionRequest,
    Compressor,
    Decision,
    Options,
    StrategyName,
)
from services.compressor.strategies import ExtractiveStrategy
from shared.chat import Role, Turn
from shared.pricing import load_catalogue
from shared.tokens import TokenCounter

from .fakes import FakeSummariser, HashingEmbedder

LONG = " ".join(
    f"Depot {i} in district {i % 9} stored {i * 3} crates of pears." for i in range(250)
)
QUESTION = "How many crates did depot 42 store?"


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def compressor(counter: TokenCounter, summariser: FakeSummariser) -> Compressor:
    extractive = ExtractiveStrategy(HashingEmbedder(), counter)
    options = Options(
        min_tokens=500,
        default_ratio=0.25,
        catalogue=load_catalogue(),
        abstractive=AbstractiveStrategy(summariser, extractive, counter),
    )
    return Compressor(extractive, counter, options)


def request(target_model: str = "gpt-4o") -> CompressionRequest:
    turns = (Turn(Role.SYSTEM, "Be brief."), Turn(Role.USER, f"{LONG}\n\n{QUESTION}"))
    return CompressionRequest(turns, target_model=target_model, strategy=StrategyName.ABSTRACTIVE)


async def test_summary_replaces_the_context_and_its_cost_is_counted(counter: TokenCounter) -> None:
    summariser = FakeSummariser("Depot 42 stored 126 crates.", cost_nano_usd=5000)
    result = await compressor(counter, summariser).compress(request())
    assert result.decision is Decision.COMPRESSED
    assert result.strategy == "abstractive"
    assert result.turns[0].content == "Be brief."
    assert result.turns[1].content == f"Depot 42 stored 126 crates.\n\n{QUESTION}"
    assert result.cost_nano_usd == 5000
    assert result.actual is not None and result.actual.cost_nano_usd > 5000  # plus compute
    (context, question, budget), *_ = summariser.calls
    assert question == QUESTION
    assert QUESTION not in context
    assert 0 < budget < counter.count(context) // 3


async def test_failed_summary_falls_back_to_extraction_with_a_reason(
    counter: TokenCounter,
) -> None:
    summariser = FakeSummariser(fail="dispatcher answered UNAVAILABLE: down")
    result = await compressor(counter, summariser).compress(request())
    assert result.decision is Decision.COMPRESSED
    assert result.strategy == "extractive"
    assert "abstractive failed (dispatcher answered UNAVAILABLE: down)" in result.reason
    assert "fell back to extractive" in result.reason
    assert "Depot 42 in district 6 stored 126 crates of pears." in result.turns[1].content
    assert result.cost_nano_usd == 0


async def test_empty_summary_counts_as_a_failure(counter: TokenCounter) -> None:
    result = await compressor(counter, FakeSummariser("   ")).compress(request())
    assert result.strategy == "extractive"
    assert "returned an empty summary" in result.reason


async def test_abstractive_without_a_dispatcher_runs_extraction_and_says_so(
    counter: TokenCounter,
) -> None:
    extractive = ExtractiveStrategy(HashingEmbedder(), counter)
    plain = Compressor(extractive, counter, Options(min_tokens=500, default_ratio=0.25))
    result = await plain.compress(request())
    assert result.compressed
    assert result.strategy == "extractive"
    assert result.reason.startswith("abstractive is not configured")


async def test_not_worth_it_for_a_cheap_target_and_no_call_is_made(counter: TokenCounter) -> None:
    # deepseek-v4-flash input costs 0.14 USD/M; Qwen3-8B reading the whole prompt and writing
    # a quarter of it costs more than 3/4 of the prompt saves at that price.
    summariser = FakeSummariser()
    result = await compressor(counter, summariser).compress(request("deepseek-v4-flash"))
    assert result.decision is Decision.NOT_WORTH_IT
    assert result.turns == request().turns
    assert summariser.calls == []
    assert result.expected is not None and result.expected.saving_nano_usd is not None
    assert result.expected.cost_nano_usd >= result.expected.saving_nano_usd
    assert "not worth it: expected saving" in result.reason


async def test_a_long_system_prompt_is_never_summarised(counter: TokenCounter) -> None:
    summariser = FakeSummariser("Depot 42 stored 126 crates.")
    rules = " ".join(f"Rule {i}: always answer in plain English without jargon." for i in range(60))
    turns = (Turn(Role.SYSTEM, rules), Turn(Role.USER, f"{LONG}\n\n{QUESTION}"))
    request = CompressionRequest(turns, target_model="gpt-4o", strategy=StrategyName.ABSTRACTIVE)
    result = await compressor(counter, summariser).compress(request)
    assert result.compressed
    assert result.turns[0].content == rules
    assert len(summariser.calls) == 1

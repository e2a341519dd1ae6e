"""Compressor decisions: threshold, free target model, no saving, pricing of the saving."""

from __future__ import annotations

import pytest

from services.compressor.compressor import CompressionRequest, Compressor, Decision, Options
from services.compressor.strategies import ExtractiveStrategy
from shared.chat import Role, Turn
from shared.errors import NotReady
from shared.pricing import load_catalogue
from shared.tokens import TokenCounter

from .fakes import FixedStrategy, HashingEmbedder

LONG = " ".join(f"Sentence number {i} is about topic {i * 7} in some detail." for i in range(200))
QUESTION = "Which topic does sentence number 42 talk about?"
SHORTER = (Turn(Role.USER, "Sentence number 42 is about topic 294.\n\n" + QUESTION),)


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def make(
    counter: TokenCounter, strategy: FixedStrategy | ExtractiveStrategy, min_tokens: int = 500
) -> Compressor:
    options = Options(min_tokens=min_tokens, default_ratio=0.5, catalogue=load_catalogue())
    return Compressor(strategy, counter, options)


def long_request(**kwargs: object) -> CompressionRequest:
    return CompressionRequest((Turn(Role.USER, f"{LONG}\n\n{QUESTION}"),), **kwargs)  # type: ignore[arg-type]


async def test_below_threshold_passes_through_untouched(counter: TokenCounter) -> None:
    strategy = FixedStrategy(SHORTER)
    turns = (Turn(Role.USER, "Hello there?"),)
    result = await make(counter, strategy).compress(CompressionRequest(turns))
    tokens = counter.count_chat(["Hello there?"])
    assert result.turns == turns
    assert not result.compressed
    assert result.decision is Decision.BELOW_THRESHOLD
    assert result.reason == f"below threshold ({tokens} < 500 tokens)"
    assert result.original_tokens == result.compressed_tokens == tokens
    assert result.strategy == ""
    assert strategy.ratios == []


async def test_threshold_is_inclusive(counter: TokenCounter) -> None:
    request = long_request()
    tokens = counter.count_chat([t.content for t in request.turns])
    at_threshold = await make(counter, FixedStrategy(SHORTER), tokens).compress(request)
    above = await make(counter, FixedStrategy(SHORTER), tokens + 1).compress(request)
    assert at_threshold.compressed
    assert above.decision is Decision.BELOW_THRESHOLD


async def test_compresses_and_prices_the_saving(counter: TokenCounter) -> None:
    result = await make(counter, FixedStrategy(SHORTER)).compress(
        long_request(target_model="gpt-4o")
    )
    saved = result.original_tokens - result.compressed_tokens
    # gpt-4o input is 2.50 USD per million tokens = 2,500 nano-USD per token.
    assert result.saving_nano_usd == saved * 2500
    assert result.compressed
    assert result.turns == SHORTER
    assert result.strategy == "fixed"
    assert result.tokens_saved == saved > 0
    assert result.cost_nano_usd == 0
    assert f"saving {saved * 2500} nano-USD at gpt-4o's input price" in result.reason
    # The local strategy's compute is priced at the default 0.5 nano-USD per prompt token.
    assert result.actual is not None
    assert result.actual.cost_nano_usd == round(0.5 * result.original_tokens)


async def test_self_hosted_target_skips_compression(counter: TokenCounter) -> None:
    strategy = FixedStrategy(SHORTER)
    request = long_request(target_model="gemma-3-270m")
    result = await make(counter, strategy).compress(request)
    assert result.decision is Decision.FREE_TARGET
    assert result.turns == request.turns
    assert "saving would be 0" in result.reason
    assert strategy.ratios == []


async def test_unknown_target_model_still_compresses(counter: TokenCounter) -> None:
    result = await make(counter, FixedStrategy(SHORTER)).compress(
        long_request(target_model="no-such-model")
    )
    assert result.compressed
    assert result.saving_nano_usd is None
    assert "no-such-model is not in the catalogue" in result.reason


async def test_output_that_saves_nothing_is_discarded(counter: TokenCounter) -> None:
    request = long_request()
    longer = (Turn(Role.USER, request.turns[0].content + " And more."),)
    for output in (None, longer):
        result = await make(counter, FixedStrategy(output)).compress(request)
        assert result.decision is Decision.NO_SAVING
        assert result.turns == request.turns
        assert result.compressed_tokens == result.original_tokens
        assert result.strategy == "fixed"
        assert result.reason.startswith("fixed saved nothing")


async def test_strategy_that_costs_more_than_it_saves_is_discarded(
    counter: TokenCounter,
) -> None:
    request = long_request(target_model="Qwen/Qwen3-8B")
    result = await make(counter, FixedStrategy(SHORTER, cost_nano_usd=10**9)).compress(request)
    assert result.decision is Decision.NO_SAVING
    assert result.turns == request.turns
    assert "not worth it" in result.reason
    assert result.actual is not None
    assert result.actual.cost_nano_usd > 10**9
    # The strategy's own bill stands even though its output was discarded.
    assert result.cost_nano_usd == 10**9


async def test_ratio_defaults_and_request_overrides(counter: TokenCounter) -> None:
    strategy = FixedStrategy(SHORTER)
    compressor = make(counter, strategy)
    await compressor.compress(long_request())
    await compressor.compress(long_request(target_ratio=0.2))
    assert strategy.ratios == [0.5, 0.2]


async def test_not_ready_raises_not_ready(counter: TokenCounter) -> None:
    compressor = make(counter, FixedStrategy(ready=False))
    assert not compressor.ready
    with pytest.raises(NotReady):
        await compressor.compress(CompressionRequest((Turn(Role.USER, "hi"),)))


async def test_extractive_end_to_end(counter: TokenCounter) -> None:
    compressor = make(counter, ExtractiveStrategy(HashingEmbedder(), counter))
    result = await compressor.compress(long_request(target_ratio=0.25))
    content = result.turns[0].content
    assert result.compressed
    assert result.strategy == "extractive"
    assert "Sentence number 42 is about topic 294 in some detail." in content
    assert content.endswith(QUESTION)
    assert result.compressed_tokens < 0.35 * result.original_tokens
    assert result.compressed_tokens == counter.count_chat([content])


async def test_deadline_reaches_the_strategy(counter: TokenCounter) -> None:
    strategy = FixedStrategy(SHORTER)
    await make(counter, strategy).compress(long_request(deadline=123.0))
    assert strategy.deadlines == [123.0]


async def test_extractive_not_worth_it_when_compute_costs_more_than_it_saves(
    counter: TokenCounter,
) -> None:
    strategy = FixedStrategy(SHORTER)
    # Qwen3-8B input is 0.06 USD/M = 60 nano-USD a token; compute at 100 a token cannot pay.
    options = Options(
        min_tokens=500,
        default_ratio=0.5,
        catalogue=load_catalogue(),
        compute_nano_usd_per_token=100.0,
    )
    result = await Compressor(strategy, counter, options).compress(
        long_request(target_model="Qwen/Qwen3-8B")
    )
    assert result.decision is Decision.NOT_WORTH_IT
    assert strategy.ratios == []  # decided before running anything
    assert result.expected is not None
    assert result.expected.cost_nano_usd == 100 * result.original_tokens
    kept = round(0.5 * result.original_tokens)
    assert result.expected.saving_nano_usd == (result.original_tokens - kept) * 60
    assert "fixed not worth it: expected saving" in result.reason


async def test_extractive_pays_at_the_default_compute_price(counter: TokenCounter) -> None:
    result = await make(counter, FixedStrategy(SHORTER)).compress(
        long_request(target_model="Qwen/Qwen3-8B")
    )
    assert result.decision is Decision.COMPRESSED
    assert result.expected is not None and result.actual is not None
    assert result.expected.pays and result.actual.pays
    assert result.actual.cost_nano_usd == round(0.5 * result.original_tokens)

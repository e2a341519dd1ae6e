"""The compressor's domain logic: pick the policy's strategy, decide whether it pays, account.

Compression is skipped when the prompt is below the token threshold (a short prompt has little
to cut and every cut risks the answer), when the target model's input is free (self-hosted:
fewer tokens save no money), and when the expected saving at the target model's input price
does not beat the strategy's own expected cost (payoff.py). A strategy's output is used only if
it really has fewer tokens and the real saving still beats the real cost. Extraction and
abstraction first run the cheap dedup pass. No gRPC here: the servicer maps protos to these
types.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from enum import StrEnum

from services.compressor import payoff
from services.compressor.abstractive import AbstractiveStrategy
from services.compressor.history import HistoryStrategy
from services.compressor.strategies import Strategy, StrategyResult
from shared.chat import Turn
from shared.errors import NotReady
from shared.pricing import ModelPrice, PriceCatalogue
from shared.tokens import TokenCounter


class Decision(StrEnum):
    """What the compressor did, as recorded on the span."""

    COMPRESSED = "compressed"
    BELOW_THRESHOLD = "below_threshold"
    FREE_TARGET = "free_target_model"
    NOT_WORTH_IT = "not_worth_it"
    NO_SAVING = "no_saving"


class StrategyName(StrEnum):
    """The strategies a policy can ask for."""

    EXTRACTIVE = "extractive"
    DEDUP = "dedup"
    ABSTRACTIVE = "abstractive"
    HISTORY = "history"


@dataclass(frozen=True)
class CompressionRequest:
    """A conversation to compress; the last user turn holds the question."""

    turns: tuple[Turn, ...]
    # Fraction of compressible tokens to keep, in (0, 1]; None means the service default.
    target_ratio: float | None = None
    # Model the prompt goes to next, used to price the saving; "" when unknown.
    target_model: str = ""
    # time.monotonic() after which the caller no longer waits; None for no deadline.
    deadline: float | None = None
    strategy: StrategyName = StrategyName.EXTRACTIVE
    # Turns the history strategy keeps verbatim; None means the service default.
    keep_last_turns: int | None = None
    # Token threshold below which nothing runs; None means the service default.
    min_tokens: int | None = None


@dataclass(frozen=True)
class CompressionResult:
    """The conversation to send on, and an account of how it came about."""

    turns: tuple[Turn, ...]
    decision: Decision
    original_tokens: int
    compressed_tokens: int
    # Strategy that ran; "" when compression was skipped before any strategy ran.
    strategy: str
    reason: str
    # What compression itself was billed (a summary model's call); 0 for local strategies.
    cost_nano_usd: int = 0
    # Input cost avoided at the target model's input price; None when the model is not priced.
    saving_nano_usd: int | None = None
    # The pays-for-itself figures: expected before running, then real (cost includes compute).
    expected: payoff.Payoff | None = None
    actual: payoff.Payoff | None = None

    @property
    def compressed(self) -> bool:
        return self.decision is Decision.COMPRESSED

    @property
    def tokens_saved(self) -> int:
        return self.original_tokens - self.compressed_tokens


@dataclass(frozen=True)
class Options:
    """Service defaults and the optional strategies; see config.Settings for each meaning."""

    min_tokens: int
    default_ratio: float
    catalogue: PriceCatalogue | None = None
    compute_nano_usd_per_token: float = 0.5
    keep_last_turns: int = 4
    dedup: Strategy | None = None
    abstractive: AbstractiveStrategy | None = None
    history: HistoryStrategy | None = None


class Compressor:
    """Runs the requested strategy behind the threshold, pricing and pays-for-itself checks."""

    def __init__(self, strategy: Strategy, counter: TokenCounter, options: Options) -> None:
        self._extractive = strategy
        self._counter = counter
        self._options = options

    @property
    def ready(self) -> bool:
        return self._extractive.ready

    async def compress(self, request: CompressionRequest) -> CompressionResult:
        if not self.ready:
            raise NotReady(f"{self._extractive.name} compression is still loading its model")
        # Counting a 10k-token prompt takes milliseconds: too long to hold the event loop.
        original = await asyncio.to_thread(self._count, request.turns)
        options = self._options
        threshold = options.min_tokens if request.min_tokens is None else request.min_tokens
        if original < threshold:
            reason = f"below threshold ({original} < {threshold} tokens)"
            return _unchanged(request, original, Decision.BELOW_THRESHOLD, "", reason)
        price = self._price(request.target_model)
        if price is not None and price.input_nano_per_mtok == 0:
            reason = (
                f"target model {request.target_model} has an input price of 0 (self-hosted), "
                "so the saving would be 0"
            )
            return _unchanged(request, original, Decision.FREE_TARGET, "", reason)
        ratio = options.default_ratio if request.target_ratio is None else request.target_ratio
        name, note = self._resolve(request.strategy)
        expected = payoff.expected(
            original_tokens=original,
            ratio=1.0 if name is StrategyName.DEDUP else ratio,
            target_price=price,
            compute_nano_usd_per_token=options.compute_nano_usd_per_token,
            summary_price=self._summary_price() if name is StrategyName.ABSTRACTIVE else None,
        )
        if name is not StrategyName.DEDUP and not expected.pays:
            label = self._name(request)
            figures = expected.describe(request.target_model)
            reason = f"{note}{label} not worth it: expected {figures}"
            result = _unchanged(request, original, Decision.NOT_WORTH_IT, label, reason)
            return replace(result, expected=expected)
        outcome = await self._run(name, request, ratio)
        compressed = await asyncio.to_thread(self._count, outcome.turns)
        result = self._account(request, outcome, original, compressed, price)
        return replace(result, expected=expected, reason=note + result.reason)

    def _resolve(self, wanted: StrategyName) -> tuple[StrategyName, str]:
        """The strategy that will run, and a note when it is not the one asked for."""
        if wanted is StrategyName.ABSTRACTIVE and self._options.abstractive is None:
            return StrategyName.EXTRACTIVE, "abstractive is not configured (no dispatcher); "
        if wanted is StrategyName.DEDUP and self._options.dedup is None:
            return StrategyName.EXTRACTIVE, "dedup is not configured; "
        if wanted is StrategyName.HISTORY and self._options.history is None:
            return StrategyName.EXTRACTIVE, "history trimming is not configured; "
        return wanted, ""

    async def _run(
        self, name: StrategyName, request: CompressionRequest, ratio: float
    ) -> StrategyResult:
        options = self._options
        if name is StrategyName.HISTORY and options.history is not None:
            keep = request.keep_last_turns
            keep = options.keep_last_turns if keep is None else keep
            return await options.history.trim(request.turns, ratio, keep, request.deadline)
        turns, details = request.turns, []
        if options.dedup is not None:
            cleaned = await options.dedup.compress(turns, 1.0, request.deadline)
            turns, details = cleaned.turns, [f"dedup {cleaned.detail}"]
            if name is StrategyName.DEDUP:
                return replace(cleaned, detail=details[0])
        main: Strategy = self._extractive
        if name is StrategyName.ABSTRACTIVE and options.abstractive is not None:
            main = options.abstractive
        outcome = await main.compress(turns, ratio, request.deadline)
        return replace(outcome, detail="; ".join([*details, outcome.detail]))

    def _account(
        self,
        request: CompressionRequest,
        outcome: StrategyResult,
        original: int,
        compressed: int,
        price: ModelPrice | None,
    ) -> CompressionResult:
        name = outcome.ran or self._name(request)
        compute = payoff.compute_cost(original, self._options.compute_nano_usd_per_token)
        actual = payoff.Payoff(
            payoff.saving(price, original - compressed), outcome.cost_nano_usd + compute
        )
        if compressed >= original or not actual.pays:
            why = (
                f"saved nothing ({outcome.detail})"
                if compressed >= original
                else f"not worth it: {actual.describe(request.target_model)}"
            )
            result = _unchanged(request, original, Decision.NO_SAVING, name, f"{name} {why}")
            # A summary that was paid for stays paid for, even when its output is discarded.
            return replace(result, cost_nano_usd=outcome.cost_nano_usd, actual=actual)
        reason = f"{name}: {original} -> {compressed} tokens; {outcome.detail}; "
        reason += actual.describe(request.target_model)
        return CompressionResult(
            turns=outcome.turns,
            decision=Decision.COMPRESSED,
            original_tokens=original,
            compressed_tokens=compressed,
            strategy=name,
            reason=reason,
            cost_nano_usd=outcome.cost_nano_usd,
            saving_nano_usd=actual.saving_nano_usd,
            actual=actual,
        )

    def _name(self, request: CompressionRequest) -> str:
        name, _ = self._resolve(request.strategy)
        return self._extractive.name if name is StrategyName.EXTRACTIVE else name.value

    def _count(self, turns: tuple[Turn, ...]) -> int:
        return self._counter.count_chat(turn.content for turn in turns)

    def _price(self, model: str) -> ModelPrice | None:
        if not model or self._options.catalogue is None:
            return None
        if not self._options.catalogue.knows(model):
            return None
        return self._options.catalogue.price(model)

    def _summary_price(self) -> ModelPrice | None:
        abstractive = self._options.abstractive
        return None if abstractive is None else self._price(abstractive.model)


def _unchanged(
    request: CompressionRequest, tokens: int, decision: Decision, strategy: str, reason: str
) -> CompressionResult:
    return CompressionResult(
        turns=request.turns,
        decision=decision,
        original_tokens=tokens,
        compressed_tokens=tokens,
        strategy=strategy,
        reason=reason,
    )

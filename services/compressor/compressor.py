"""The compressor's domain logic: decide whether compression pays, run a strategy, account.

Compression is skipped when the prompt is below the token threshold (a short prompt has little
to cut and every cut risks the answer), and when the target model's input is free (self-hosted:
fewer tokens save no money). A strategy's output is used only if it really has fewer tokens,
and, when the saving can be priced, only if the saving exceeds what the strategy itself cost.
No gRPC here: the servicer maps protos to these types.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum

from services.compressor.strategies import Strategy, StrategyResult
from shared.chat import Turn
from shared.errors import NotReady
from shared.pricing import ModelPrice, PriceCatalogue, TokenUsage
from shared.tokens import TokenCounter


class Decision(StrEnum):
    """What the compressor did, as recorded on the span."""

    COMPRESSED = "compressed"
    BELOW_THRESHOLD = "below_threshold"
    FREE_TARGET = "free_target_model"
    NO_SAVING = "no_saving"


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
    # What compression itself cost (0 for local strategies).
    cost_nano_usd: int = 0
    # Input cost avoided at the target model's price; None when the model is not priced.
    saving_nano_usd: int | None = None

    @property
    def compressed(self) -> bool:
        return self.decision is Decision.COMPRESSED

    @property
    def tokens_saved(self) -> int:
        return self.original_tokens - self.compressed_tokens


class Compressor:
    """Runs one Strategy behind the threshold, pricing and no-saving checks."""

    def __init__(
        self,
        strategy: Strategy,
        counter: TokenCounter,
        *,
        min_tokens: int,
        default_ratio: float,
        catalogue: PriceCatalogue | None = None,
    ) -> None:
        self._strategy = strategy
        self._counter = counter
        self._min_tokens = min_tokens
        self._default_ratio = default_ratio
        self._catalogue = catalogue

    @property
    def ready(self) -> bool:
        return self._strategy.ready

    async def compress(self, request: CompressionRequest) -> CompressionResult:
        if not self.ready:
            raise NotReady(f"{self._strategy.name} compression is still loading its model")
        # Counting a 10k-token prompt takes milliseconds: too long to hold the event loop.
        original = await asyncio.to_thread(self._count, request.turns)
        if original < self._min_tokens:
            reason = f"below threshold ({original} < {self._min_tokens} tokens)"
            return _unchanged(request, original, Decision.BELOW_THRESHOLD, "", reason)
        price = self._price(request.target_model)
        if price is not None and price.input_nano_per_mtok == 0:
            reason = (
                f"target model {request.target_model} has an input price of 0 (self-hosted), "
                "so the saving would be 0"
            )
            return _unchanged(request, original, Decision.FREE_TARGET, "", reason)
        ratio = self._default_ratio if request.target_ratio is None else request.target_ratio
        outcome = await self._strategy.compress(request.turns, ratio, request.deadline)
        compressed = await asyncio.to_thread(self._count, outcome.turns)
        return self._account(request, outcome, original, compressed, price)

    def _account(
        self,
        request: CompressionRequest,
        outcome: StrategyResult,
        original: int,
        compressed: int,
        price: ModelPrice | None,
    ) -> CompressionResult:
        name = self._strategy.name
        if compressed >= original:
            reason = f"{name} saved nothing ({outcome.detail})"
            return _unchanged(request, original, Decision.NO_SAVING, name, reason)
        saving = (
            None
            if price is None
            else price.cost_nano_usd(TokenUsage(input_tokens=original - compressed))
        )
        if saving is not None and outcome.cost_nano_usd >= saving:
            reason = (
                f"{name} would save {saving} nano-USD at {request.target_model}'s input price "
                f"but costs {outcome.cost_nano_usd}"
            )
            return _unchanged(request, original, Decision.NO_SAVING, name, reason)
        reason = f"{name}: {original} -> {compressed} tokens; {outcome.detail}"
        if saving is not None:
            reason += f"; saves {saving} nano-USD at {request.target_model}'s input price"
        elif request.target_model:
            reason += f"; saving not priced: {request.target_model} is not in the catalogue"
        return CompressionResult(
            turns=outcome.turns,
            decision=Decision.COMPRESSED,
            original_tokens=original,
            compressed_tokens=compressed,
            strategy=name,
            reason=reason,
            cost_nano_usd=outcome.cost_nano_usd,
            saving_nano_usd=saving,
        )

    def _count(self, turns: tuple[Turn, ...]) -> int:
        return self._counter.count_chat(turn.content for turn in turns)

    def _price(self, model: str) -> ModelPrice | None:
        if not model or self._catalogue is None or not self._catalogue.knows(model):
            return None
        return self._catalogue.price(model)


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

"""Does compression pay for itself? The expected saving against the compressor's own cost.

Saving: the input tokens removed, at the target model's input price (shared/pricing.py).
Cost: what running the strategy costs. Local strategies (extraction, dedup, extraction-based
history trimming) cost CPU time, priced at a configurable, small but non-zero rate per prompt
token, so that compression does not run where it saves nothing at all. The abstractive strategy
also pays for a cheap model's call: the whole context in, the summary out, at that model's
catalogue price.

Before running, both are estimated from the target ratio (the strategy is expected to keep
`ratio` of the prompt); after running, the real figures are compared again, since a strategy
may save less than hoped.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.pricing import ModelPrice, TokenUsage


@dataclass(frozen=True)
class Payoff:
    """Expected or real saving and cost of one compression, in nano-USD."""

    # None when the target model is not priced: the saving is unknown, so it cannot veto.
    saving_nano_usd: int | None
    cost_nano_usd: int

    @property
    def pays(self) -> bool:
        return self.saving_nano_usd is None or self.saving_nano_usd > self.cost_nano_usd

    def describe(self, target_model: str) -> str:
        saving = (
            f"saving not priced ({target_model or 'no target model'} is not in the catalogue)"
            if self.saving_nano_usd is None
            else f"saving {self.saving_nano_usd} nano-USD at {target_model}'s input price"
        )
        return f"{saving} vs cost {self.cost_nano_usd} nano-USD"


def compute_cost(tokens: int, nano_usd_per_token: float) -> int:
    """CPU cost of a local strategy over a prompt of `tokens` tokens; at least 1 when priced."""
    cost = tokens * nano_usd_per_token
    return max(1, round(cost)) if cost > 0 else 0


def saving(price: ModelPrice | None, tokens_removed: int) -> int | None:
    if price is None:
        return None
    return price.cost_nano_usd(TokenUsage(input_tokens=max(0, tokens_removed)))


def expected(
    *,
    original_tokens: int,
    ratio: float,
    target_price: ModelPrice | None,
    compute_nano_usd_per_token: float,
    summary_price: ModelPrice | None = None,
) -> Payoff:
    """The estimate made before running; `summary_price` is set for the abstractive strategy."""
    kept = round(ratio * original_tokens)
    cost = compute_cost(original_tokens, compute_nano_usd_per_token)
    if summary_price is not None:
        usage = TokenUsage(input_tokens=original_tokens, output_tokens=kept)
        cost += summary_price.cost_nano_usd(usage)
    return Payoff(saving(target_price, original_tokens - kept), cost)

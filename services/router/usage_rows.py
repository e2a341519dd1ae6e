"""One request's row of the usage record (usage.py), from the cost table it was answered with.

Cost by stage is the cost table's lines summed per stage. Savings (baseline minus cost) are
split by the stage that made them, so the split always sums to the whole:

- **cache**: a hit saves the baseline's whole price; a background audit of a hit is a cost the
  cache incurs, so it counts against the cache's savings;
- **compressor**: the prompt tokens it removed, priced as input of the model and region that
  answered, less what the summary cost (negative when a summary was paid for and discarded);
- **cascade**: the rest, what answering on a cheaper tier than the baseline saved (negative
  when escalations cost more than the baseline would have, and for a request no tier answered).
"""

from __future__ import annotations

from collections import Counter
from datetime import date

from services.router.class_start import class_key
from services.router.model import ChatRequest, Outcome, RouteResult, StageName
from services.router.usage import (
    BASELINE,
    CACHE_HITS,
    COST,
    REQUESTS,
    STAGE_COST,
    STAGE_SAVED,
    UsageKey,
    UsageRow,
)
from shared.pricing import PriceCatalogue, TokenUsage, UnknownModel

# Stages of costs that have no line in a cost table.
AUDIT_STAGE = "cache_audit"
UNANSWERED_STAGE = "unanswered"
CASCADE_SAVINGS = "cascade"


def _key(
    day: date, request: ChatRequest, tier: int = 0, model: str = "", region: str = ""
) -> UsageKey:
    return UsageKey(
        day.isoformat(),
        request.tenant.tenant_id,
        request.model_class.name,
        class_key(request),
        tier,
        model,
        region,
    )


def compression_saving(request: ChatRequest, result: RouteResult, catalogue: PriceCatalogue) -> int:
    """What the prompt tokens the compressor removed would have cost on the answering model."""
    used = any(
        line.stage is StageName.COMPRESSOR and line.outcome is Outcome.USED for line in result.lines
    )
    removed = request.prompt_tokens - result.usage.input_tokens
    if not used or removed <= 0:
        return 0
    try:
        return catalogue.cost_nano_usd(result.model, TokenUsage(removed, 0), result.region)
    except UnknownModel:
        return 0


def answered_row(
    day: date, request: ChatRequest, result: RouteResult, catalogue: PriceCatalogue
) -> UsageRow:
    """An answered request's row: from the cache (tier 0) or from the tier that answered."""
    cost = result.total_cost_nano_usd
    # Filled item by item: Counter(mapping) type-checks its argument, on every request.
    counters: Counter[str] = Counter()
    counters[REQUESTS], counters[COST] = 1, cost
    counters[BASELINE] = result.baseline_cost_nano_usd
    for line in result.lines:
        if line.cost_nano_usd:
            counters[STAGE_COST + line.stage.value] += line.cost_nano_usd
    saved = result.baseline_cost_nano_usd - cost
    if result.cache_hit:
        counters[CACHE_HITS] = 1
        counters[STAGE_SAVED + StageName.CACHE.value] = saved
        return UsageRow(_key(day, request, 0, result.model), counters)
    compressor_cost = counters[STAGE_COST + StageName.COMPRESSOR.value]
    compressor = compression_saving(request, result, catalogue) - compressor_cost
    counters[STAGE_SAVED + StageName.COMPRESSOR.value] = compressor
    counters[STAGE_SAVED + CASCADE_SAVINGS] = saved - compressor
    return UsageRow(_key(day, request, result.tier, result.model, result.region), counters)


def unanswered_row(day: date, request: ChatRequest, cost_nano_usd: int, *, audit: bool) -> UsageRow:
    """What a request no tier answered still cost, or what a cache hit's audit cost: a cost
    with no baseline, so a negative saving of the stage that spent it."""
    stage = AUDIT_STAGE if audit else UNANSWERED_STAGE
    saver = StageName.CACHE.value if audit else CASCADE_SAVINGS
    counters = Counter(
        {
            REQUESTS: 0 if audit else 1,
            COST: cost_nano_usd,
            STAGE_COST + stage: cost_nano_usd,
            STAGE_SAVED + saver: -cost_nano_usd,
        }
    )
    return UsageRow(_key(day, request), counters)

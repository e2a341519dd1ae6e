"""The batcher's Prometheus figures: how many calls shared a flight, and how packing went."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter

if TYPE_CHECKING:
    from services.batcher.executor import Executed
    from services.batcher.singleflight import Shared


class BatcherMetrics:
    """Counters the executor reports each Execute call to, once it has its answer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "sluice_batcher_calls",
            "Execute calls answered.",
            registry=registry,
        )
        self.coalesced = Counter(
            "sluice_batcher_coalesced_calls",
            "Calls that joined an identical call already in flight (singleflight) instead of "
            "making their own upstream call.",
            registry=registry,
        )
        self.packed = Counter(
            "sluice_batcher_packed_calls",
            "Calls answered from a packed upstream call shared with other calls.",
            registry=registry,
        )
        self.pack_fallbacks = Counter(
            "sluice_batcher_pack_fallbacks",
            "Calls sent alone after packing failed them: packed_call_failed (the packed call "
            "itself failed) or reply_unusable (their part of the reply could not be split out).",
            ("reason",),
            registry=registry,
        )
        self.tokens_saved = Counter(
            "sluice_batcher_pack_input_tokens_saved",
            "Input tokens packed calls did not send, against each call sent alone.",
            registry=registry,
        )

    def executed(self, shared: Shared[Executed]) -> None:
        """Counts one answered call; packing is counted once per flight, by its own caller."""
        self.calls.inc()
        if shared.joined:
            self.coalesced.inc()
            return
        executed = shared.value
        if executed.fallback_reason:
            reason = "reply_unusable" if executed.packed_size else "packed_call_failed"
            self.pack_fallbacks.labels(reason).inc()
        elif executed.packed_size > 1:
            self.packed.inc()
            self.tokens_saved.inc(max(0, executed.input_tokens_saved))

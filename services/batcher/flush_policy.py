"""When a group of packable calls is sent: at the end of its window, when it is full, or early
enough that the most urgent member's deadline still leaves room for the call and a fallback."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FlushPolicy:
    # How long the first call of a group waits for others to join.
    window_s: float
    # A group this size is sent at once.
    max_items: int
    # Time kept back from the earliest deadline: half for the packed call, half for the
    # individual calls that replace it if its reply cannot be split.
    reserve_s: float

    @property
    def enabled(self) -> bool:
        return self.window_s > 0 and self.max_items >= 2

    def flush_at(self, opened_at: float, deadlines: Iterable[float]) -> float:
        """The time a group opened at opened_at, with members due at deadlines, must be sent."""
        earliest = min(deadlines, default=math.inf)
        return min(opened_at + self.window_s, earliest - self.reserve_s)

    def due(self, now: float, size: int, flush_at: float) -> bool:
        """True when the group must be sent now rather than wait for more members."""
        return size >= self.max_items or now >= flush_at

    def packed_timeout(self, now: float, deadlines: Iterable[float]) -> float:
        """How long the packed call may take, leaving the rest for the fallback calls; 0 means
        there is no time to try packing at all."""
        remaining = min(deadlines, default=math.inf) - now
        if math.isinf(remaining):
            return math.inf
        budget = remaining - self.reserve_s / 2
        return budget if budget > 0 else 0.0

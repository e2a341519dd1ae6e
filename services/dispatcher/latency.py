"""Per-endpoint latency statistics: sliding-window percentiles and an EWMA.

A window of recent samples gives p50/p95/p99 (tail behaviour changes quickly, so old samples age
out by count and by age), and an EWMA gives a cheap, smooth score for choosing endpoints. Each
endpoint keeps two: time to first token, which says how loaded the endpoint is whatever the
answer's length, and total time.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p95: float
    p99: float
    samples: int


def _nearest_rank(ordered: list[float], q: float) -> float:
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


class LatencyTracker:
    """Sliding-window percentiles and an EWMA of latencies in seconds."""

    def __init__(
        self,
        window: int = 512,
        alpha: float = 0.2,
        max_age_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # (when, seconds)
        self._samples: deque[tuple[float, float]] = deque(maxlen=window)
        self._alpha = alpha
        self._max_age_s = max_age_s
        self._clock = clock
        self._ewma: float | None = None
        # Sorting 512 floats per request is cheap, but a hedge decision asks for p95 on every
        # call; the sorted copy is kept until the next sample.
        self._sorted: list[float] | None = None

    def record(self, seconds: float) -> None:
        self._samples.append((self._clock(), seconds))
        self._sorted = None
        self._ewma = (
            seconds
            if self._ewma is None
            else (self._alpha * seconds + (1 - self._alpha) * self._ewma)
        )

    @property
    def ewma(self) -> float | None:
        return self._ewma

    def _ordered(self) -> list[float]:
        horizon = self._clock() - self._max_age_s
        if self._samples and self._samples[0][0] < horizon:
            while self._samples and self._samples[0][0] < horizon:
                self._samples.popleft()
            self._sorted = None
        if self._sorted is None:
            self._sorted = sorted(value for _, value in self._samples)
        return self._sorted

    @property
    def samples(self) -> int:
        return len(self._ordered())

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile, q in [0, 100]; None with no samples."""
        ordered = self._ordered()
        return _nearest_rank(ordered, q) if ordered else None

    def mean_excess(self, waited_s: float) -> tuple[float | None, int]:
        """How much longer, on average, the calls that took more than waited_s took, and how
        many there were. Lower bounds (calls cancelled by a hedge) count at their bound: leaving
        them out would keep only the calls that finished soon after the hedge time."""
        ordered = self._ordered()
        beyond = ordered[bisect.bisect_right(ordered, waited_s) :]
        if not beyond:
            return None, 0
        return sum(beyond) / len(beyond) - waited_s, len(beyond)

    def percentiles(self) -> Percentiles | None:
        ordered = self._ordered()
        if not ordered:
            return None
        return Percentiles(
            _nearest_rank(ordered, 50),
            _nearest_rank(ordered, 95),
            _nearest_rank(ordered, 99),
            len(ordered),
        )


class EndpointLatency:
    """Time to first token and total time of one endpoint's calls."""

    def __init__(self, window: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttft = LatencyTracker(window, clock=clock)
        self.total = LatencyTracker(window, clock=clock)

    def record(self, ttft_s: float, total_s: float) -> None:
        self.ttft.record(ttft_s)
        self.total.record(total_s)

    def record_censored(self, waited_s: float) -> None:
        """A call cancelled before its first token took at least waited_s to start.

        Dropping such calls would leave only the fast ones in the window, so p95 would shrink
        and hedging would fire ever earlier; the lower bound keeps the tail in view.
        """
        self.ttft.record(waited_s)

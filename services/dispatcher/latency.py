"""Per-endpoint latency statistics and outlier ejection.

A sliding window of recent samples gives p50/p95/p99 (tail behaviour changes quickly, so old
samples must age out), and an EWMA gives a cheap, smooth score for choosing endpoints.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p95: float
    p99: float
    samples: int


class LatencyTracker:
    """Sliding-window percentiles and an EWMA of latencies in seconds."""

    def __init__(self, window: int = 512, alpha: float = 0.2) -> None:
        self._samples: deque[float] = deque(maxlen=window)
        self._alpha = alpha
        self._ewma: float | None = None

    def record(self, seconds: float) -> None:
        self._samples.append(seconds)
        self._ewma = (
            seconds
            if self._ewma is None
            else (self._alpha * seconds + (1 - self._alpha) * self._ewma)
        )

    @property
    def ewma(self) -> float | None:
        return self._ewma

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile, q in [0, 100]; None with no samples."""
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[rank - 1]

    def percentiles(self) -> Percentiles | None:
        if not self._samples:
            return None
        ordered = sorted(self._samples)

        def at(q: float) -> float:
            return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]

        return Percentiles(at(50), at(95), at(99), len(ordered))


@dataclass
class Ejection:
    """Consecutive-failure outlier ejection with exponential back-off (Envoy-style).

    After `threshold` consecutive failures the endpoint is ejected for base_s, doubling with each
    further ejection up to max_s. Once the time is up it is tried again (half-open); a success
    resets everything.
    """

    threshold: int
    base_s: float
    clock: Callable[[], float]
    max_s: float = 60.0
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = field(default=0.0)

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self.ejections = 0
        self.ejected_until = 0.0

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.threshold:
            self.ejected_until = self.clock() + min(self.max_s, self.base_s * 2**self.ejections)
            self.ejections += 1
            self.consecutive_failures = 0

    @property
    def ejected(self) -> bool:
        return self.clock() < self.ejected_until

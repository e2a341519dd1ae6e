"""Per-endpoint admission: outlier ejection, Retry-After holds, concurrency and RPM limits.

Outlier ejection follows Envoy's consecutive-5xx detector (envoyproxy.io, "Outlier detection"):
after `threshold` consecutive server errors or timeouts the endpoint is ejected for
base_s * 2^(ejections so far), capped at max_s. When the time is up it is half-open: exactly one
call may probe it, and the others keep away until that probe answers. A success closes it and
resets the back-off; a failure ejects it again for twice as long.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Ejection:
    """Consecutive-failure outlier ejection with exponential back-off and half-open probes."""

    threshold: int
    base_s: float
    clock: Callable[[], float]
    max_s: float = 60.0
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = field(default=0.0)
    probing: bool = False

    @property
    def ejected(self) -> bool:
        """Within the ejection time: no call goes here unless nothing else is left."""
        return self.clock() < self.ejected_until

    @property
    def half_open(self) -> bool:
        return self.ejections > 0 and not self.ejected

    def admits(self) -> bool:
        """Closed, or half-open with no probe in flight yet."""
        if self.ejected:
            return False
        return not (self.half_open and self.probing)

    def start(self) -> bool:
        """Marks a call as started; True when it is the half-open probe."""
        if self.half_open and not self.probing:
            self.probing = True
            return True
        return False

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self.ejections = 0
        self.ejected_until = 0.0
        self.probing = False

    def record_failure(self) -> None:
        if self.half_open and self.probing:
            # The probe failed: straight back out, for longer.
            self._eject()
            return
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.threshold:
            self._eject()

    def abandon_probe(self) -> None:
        """The probe was cancelled (a lost hedge race) without a verdict."""
        self.probing = False

    def _eject(self) -> None:
        self.ejected_until = self.clock() + min(self.max_s, self.base_s * 2**self.ejections)
        self.ejections += 1
        self.consecutive_failures = 0
        self.probing = False


@dataclass
class RateLimitHold:
    """A 429's Retry-After: the endpoint gets no call at all until it has passed."""

    clock: Callable[[], float]
    until: float = 0.0

    def hold(self, seconds: float) -> None:
        self.until = max(self.until, self.clock() + seconds)

    @property
    def held(self) -> bool:
        return self.clock() < self.until

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.until - self.clock())


class CallLimits:
    """Calls in flight (max_concurrency) and calls started per 60 s (rpm); 0 means unlimited.

    The RPM limit is a sliding log of start times rather than a token bucket, so that no
    60-second window ever holds more than `rpm` starts, which is how providers count.
    """

    _WINDOW_S = 60.0

    def __init__(
        self, max_concurrency: int, rpm: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_concurrency = max_concurrency
        self._rpm = rpm
        self._clock = clock
        self._starts: deque[float] = deque()
        self.in_flight = 0

    def _prune(self) -> None:
        horizon = self._clock() - self._WINDOW_S
        while self._starts and self._starts[0] <= horizon:
            self._starts.popleft()

    def has_room(self) -> bool:
        if self._max_concurrency and self.in_flight >= self._max_concurrency:
            return False
        if self._rpm:
            self._prune()
            return len(self._starts) < self._rpm
        return True

    def wait_hint_s(self) -> float | None:
        """When the RPM window next frees a start; None when only concurrency blocks."""
        if not self._rpm:
            return None
        self._prune()
        if len(self._starts) < self._rpm:
            return None
        return max(0.0, self._starts[0] + self._WINDOW_S - self._clock())

    def acquire(self) -> None:
        self.in_flight += 1
        if self._rpm:
            self._starts.append(self._clock())

    def release(self) -> None:
        self.in_flight -= 1

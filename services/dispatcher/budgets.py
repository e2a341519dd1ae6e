"""Retry and hedge budgets, and jittered back-off between retries.

Retries and hedges are extra load on an upstream that may already be struggling; unbounded,
they turn a brown-out into an outage (a retry storm). Both are therefore budgeted against the
requests seen over a sliding window:

- RetryBudget follows Envoy's `retry_budget` (envoyproxy.io, cluster circuit breakers:
  `budget_percent`, `min_retry_concurrency`): retries may be at most `ratio` of requests, but a
  few retries in flight at once are always allowed so a quiet service can still fail over.
  Envoy measures the ratio over active requests; here it is measured over a time window, as in
  Finagle's RetryBudget, so short bursts of failures do not starve each other.
- The hedge budget caps hedges as Dean and Barroso suggest in "The Tail at Scale" (CACM 2013),
  where hedging after the 95th-percentile latency adds about 5% load. It is a token bucket in
  the manner of Finagle's RetryBudget: each request deposits `hedge_ratio` of a token, a hedge
  takes one. The bucket holds at most `hedge_burst` tokens, so a stall that makes every call
  slow at once (which hedging cannot help) spends a few tokens, not the next ten seconds'
  worth. Retries take tokens too, down to minus the burst: while failovers are spending extra
  calls, hedging, which is optional, gives way.

Back-off is exponential with full jitter (Brooker, "Exponential Backoff And Jitter", AWS
Architecture Blog, 2015), with Envoy's 25 ms base and a cap of ten times that.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass


class SlidingCounter:
    """Event counts over the last `window_s`, in one-second buckets (bounded memory)."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets = max(1, round(window_s))
        self._clock = clock
        self._counts: dict[int, int] = {}

    def _now(self) -> int:
        return int(self._clock())

    def _expire(self, now: int) -> None:
        for second in [s for s in self._counts if s <= now - self._buckets]:
            del self._counts[second]

    def add(self, n: int = 1) -> None:
        now = self._now()
        self._expire(now)
        self._counts[now] = self._counts.get(now, 0) + n

    def total(self) -> int:
        self._expire(self._now())
        return sum(self._counts.values())


@dataclass(frozen=True)
class BudgetPolicy:
    retry_ratio: float = 0.2
    min_retry_concurrency: int = 3
    hedge_ratio: float = 0.05
    hedge_burst: float = 3.0
    window_s: float = 10.0


# Twenty deposits of 0.05 add up to a hair under 1.0 in binary floating point.
_EPSILON = 1e-9


class Budgets:
    """The requests, retries and hedges of one dispatcher, and whether more may be spent."""

    def __init__(self, policy: BudgetPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._requests = SlidingCounter(policy.window_s, clock)
        self._retries = SlidingCounter(policy.window_s, clock)
        self._hedges = SlidingCounter(policy.window_s, clock)
        self._retries_in_flight = 0
        self._hedge_tokens = 0.0
        # Cumulative, for stats: what each budget allowed and refused since start.
        self.totals = {"retries": 0, "retries_denied": 0, "hedges": 0, "hedges_denied": 0}

    def record_request(self) -> None:
        self._requests.add()
        self._hedge_tokens = min(
            self._policy.hedge_burst, self._hedge_tokens + self._policy.hedge_ratio
        )

    def try_retry(self) -> bool:
        """Spends one retry if the budget allows it; pair with `retry_done`."""
        allowed = (
            self._retries_in_flight < self._policy.min_retry_concurrency
            or self._retries.total() < self._policy.retry_ratio * self._requests.total()
        )
        if allowed:
            self._retries.add()
            self._retries_in_flight += 1
            self._hedge_tokens = max(-self._policy.hedge_burst, self._hedge_tokens - 1)
            self.totals["retries"] += 1
        else:
            self.totals["retries_denied"] += 1
        return allowed

    def retry_done(self) -> None:
        self._retries_in_flight -= 1

    def try_hedge(self) -> bool:
        """Spends a hedge token if there is one."""
        allowed = self._hedge_tokens >= 1 - _EPSILON
        if allowed:
            self._hedge_tokens -= 1
            self._hedges.add()
            self.totals["hedges"] += 1
        else:
            self.totals["hedges_denied"] += 1
        return allowed

    def snapshot(self) -> dict[str, int]:
        """Requests, retries and hedges within the window."""
        return {
            "requests": self._requests.total(),
            "retries": self._retries.total(),
            "hedges": self._hedges.total(),
        }


def backoff_s(retry: int, rng: random.Random, base_s: float = 0.025, cap_s: float = 0.25) -> float:
    """Full-jitter exponential back-off before the retry-th retry (1-based)."""
    return rng.uniform(0.0, min(cap_s, base_s * 2 ** (retry - 1)))

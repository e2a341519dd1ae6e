"""The latency and fault model of a simulated region.

The random source and the sleep are constructor arguments, so a test can seed the faults and
skip the waiting while still observing how long the simulator meant to wait.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from enum import StrEnum

from services.simulator.scenario import FaultSpec, LatencySpec

Sleep = Callable[[float], Awaitable[None]]
# z-score of the 99th percentile of the standard normal: a lognormal's p99 is exp(mu + Z99 sigma).
_Z99 = 2.3263478740408408


class FaultKind(StrEnum):
    """An injected failure, named as the stats report it."""

    OUTAGE = "outage"
    ERROR = "error"
    RATE_LIMIT = "rate_limit"
    TIMEOUT = "timeout"
    # A streamed answer cut after its first piece (drawn apart from the others, see cut()).
    STREAM_CUT = "stream_cut"


class FaultModel:
    """Draws faults and latencies for a region's settings."""

    def __init__(
        self, rng: random.Random, sleep: Sleep = asyncio.sleep, latency_scale: float = 1.0
    ) -> None:
        self._rng = rng
        self._sleep = sleep
        self._scale = latency_scale

    @property
    def latency_scale(self) -> float:
        return self._scale

    def roll(self, faults: FaultSpec) -> FaultKind | None:
        """The fault this request suffers, if any: one uniform draw against stacked rates."""
        if faults.outage:
            return FaultKind.OUTAGE
        if faults.error_rate + faults.rate_limit_rate + faults.timeout_rate <= 0.0:
            return None
        draw = self._rng.random()
        for kind, rate in (
            (FaultKind.ERROR, faults.error_rate),
            (FaultKind.RATE_LIMIT, faults.rate_limit_rate),
            (FaultKind.TIMEOUT, faults.timeout_rate),
        ):
            if draw < rate:
                return kind
            draw -= rate
        return None

    def slow_factor(self, faults: FaultSpec) -> float:
        """How much slower this answer is: slow_factor for a slow_rate share, else 1.

        No draw is made when slow_rate is 0, so scenarios without a slow tail keep the fault
        and latency sequence a seed gave them before the slow tail existed.
        """
        if faults.slow_rate <= 0.0:
            return 1.0
        return faults.slow_factor if self._rng.random() < faults.slow_rate else 1.0

    def cut(self, faults: FaultSpec) -> bool:
        """Whether this streamed answer stops after its first piece; no draw when the rate is 0."""
        return faults.stream_cut_rate > 0.0 and self._rng.random() < faults.stream_cut_rate

    def ttft_s(self, latency: LatencySpec) -> float:
        """Time to first token: lognormal with the configured median and p99, then scaled."""
        if self._scale == 0.0 or latency.ttft_median_ms <= 0.0:
            return 0.0
        mu = math.log(latency.ttft_median_ms)
        sigma = (math.log(latency.ttft_p99_ms) - mu) / _Z99
        return self._rng.lognormvariate(mu, sigma) * self._scale / 1000.0

    def per_token_s(self, latency: LatencySpec) -> float:
        return latency.per_token_ms * self._scale / 1000.0

    async def wait(self, seconds: float) -> None:
        if seconds > 0.0:
            await self._sleep(seconds)

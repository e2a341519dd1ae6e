"""Which endpoint gets a call: power of two choices on latency, preferring the caller's region.

Among the endpoints that serve the model and admit a call now (not ejected, not held by a 429's
Retry-After, under their concurrency and RPM limits), those in the caller's region come first.
Two of them are drawn at random and the one with the lower score wins (Mitzenmacher, "The Power
of Two Choices in Randomized Load Balancing", IEEE TPDS 2001): nearly as good as always taking
the best, without every dispatcher herding onto the same endpoint between two updates of its
statistics. The score is the EWMA of time to first token times the calls in flight plus one, the
"peak EWMA" cost of Finagle and Linkerd, so a fast endpoint that is already busy loses to an idle
one that is a little slower. Hedges and failovers take the single best remaining endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from services.dispatcher.endpoints import Endpoint
from services.dispatcher.health import CallLimits, Ejection, RateLimitHold
from services.dispatcher.latency import EndpointLatency

# Score of an endpoint with no latency sample yet when no other has one either: any small
# number works, since then only the calls in flight tell endpoints apart.
_UNKNOWN_TTFT_S = 0.001


@dataclass
class EndpointState:
    """What the dispatcher knows about one endpoint."""

    endpoint: Endpoint
    latency: EndpointLatency
    ejection: Ejection
    hold: RateLimitHold
    limits: CallLimits

    @property
    def name(self) -> str:
        return self.endpoint.name

    def admits(self) -> bool:
        return not self.hold.held and self.ejection.admits() and self.limits.has_room()

    def score(self, unknown_ttft_s: float) -> float:
        ewma = self.latency.ttft.ewma
        return (unknown_ttft_s if ewma is None else ewma) * (self.limits.in_flight + 1)


@dataclass(frozen=True)
class StatePolicy:
    latency_window: int = 512
    eject_after_failures: int = 3
    eject_base_s: float = 2.0
    eject_max_s: float = 60.0


def build_states(
    endpoints: Iterable[Endpoint], policy: StatePolicy, clock: Callable[[], float]
) -> list[EndpointState]:
    return [
        EndpointState(
            e,
            EndpointLatency(policy.latency_window, clock),
            Ejection(policy.eject_after_failures, policy.eject_base_s, clock, policy.eject_max_s),
            RateLimitHold(clock),
            CallLimits(e.max_concurrency, e.rpm, clock),
        )
        for e in endpoints
    ]


class Selector:
    """Picks endpoints for calls and wakes callers waiting for a free slot."""

    def __init__(
        self,
        states: Sequence[EndpointState],
        local_region: str,
        rng: random.Random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._states = list(states)
        self._local_region = local_region
        self._rng = rng
        self._clock = clock
        self._released = asyncio.Event()

    @property
    def states(self) -> list[EndpointState]:
        return self._states

    def serving(self, model: str) -> list[EndpointState]:
        return [s for s in self._states if model in s.endpoint.models]

    def _unknown_ttft(self, states: Sequence[EndpointState]) -> float:
        # An endpoint without samples scores as the average known one: tried, but not flooded.
        known = [s.latency.ttft.ewma for s in states if s.latency.ttft.ewma is not None]
        return sum(known) / len(known) if known else _UNKNOWN_TTFT_S

    def pick(
        self, model: str, region: str, exclude: set[str], *, two_choices: bool
    ) -> EndpointState | None:
        """The endpoint for the next call, or None when no untried one admits a call now."""
        serving = self.serving(model)
        eligible = [s for s in serving if s.name not in exclude and s.admits()]
        if not eligible:
            return None
        local = [s for s in eligible if s.endpoint.region == (region or self._local_region)]
        pool = local or eligible
        unknown = self._unknown_ttft(serving)
        if two_choices and len(pool) > 1:
            pool = self._rng.sample(pool, 2)
        return min(pool, key=lambda s: s.score(unknown))

    def last_resort(self, model: str, exclude: set[str]) -> EndpointState | None:
        """An ejected endpoint, when every healthy one has been tried: better than failing.

        Endpoints held by a 429 stay out: their Retry-After is a promise we keep.
        """
        ejected = [
            s
            for s in self.serving(model)
            if s.name not in exclude
            and not s.hold.held
            and s.limits.has_room()
            and not s.ejection.admits()
        ]
        return min(ejected, key=lambda s: s.ejection.ejected_until) if ejected else None

    def blocked_by_limits(self, model: str, exclude: set[str]) -> bool:
        """True when some untried endpoint is only waiting for a concurrency or RPM slot."""
        return any(
            not s.hold.held and not s.limits.has_room()
            for s in self.serving(model)
            if s.name not in exclude
        )

    def soonest_hold_s(self, model: str) -> float | None:
        holds = [s.hold.remaining_s for s in self.serving(model)]
        held = [h for h in holds if h > 0]
        return min(held) if held else None

    async def wait_for_room(self, model: str, exclude: set[str], timeout_s: float) -> None:
        """Waits until a call ends or an RPM window frees a start, at most timeout_s."""
        hints = [
            hint
            for s in self.serving(model)
            if s.name not in exclude and (hint := s.limits.wait_hint_s()) is not None
        ]
        wait_s = min([timeout_s, *hints])
        released = self._released
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(released.wait(), max(wait_s, 0.0))

    def acquire(self, state: EndpointState) -> bool:
        """Takes a slot on the endpoint; True when the call is its half-open probe."""
        state.limits.acquire()
        return state.ejection.start()

    def release(self, state: EndpointState) -> None:
        state.limits.release()
        # Wake every waiter; each checks again whether there is room for it.
        self._released.set()
        self._released = asyncio.Event()

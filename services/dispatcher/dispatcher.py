"""The dispatcher: endpoints, their health and statistics, budgets, and one flight per request.

`dispatch` returns a whole answer; `dispatch_stream` passes text through as it arrives. Both
stream from the upstream (see providers/openai.py for why), so both measure time to first token
and both can hedge. They differ only after the first token: a streaming caller has seen text, so
a broken stream is an error; a whole-answer caller has seen nothing, so the dispatcher fails
over as if the first token had never come.

Deadlines: the caller's gRPC deadline (the servicer passes it as a monotonic time) bounds every
wait here and every upstream call's timeout, so a request never outlives its caller's patience
and the router can count on an answer or DEADLINE_EXCEEDED by then.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from opentelemetry import trace
from prometheus_client import CollectorRegistry

from services.dispatcher.budgets import BudgetPolicy, Budgets
from services.dispatcher.calls import Delta, DispatchResult, ModelRequest, ProviderAnswer
from services.dispatcher.endpoints import Endpoint
from services.dispatcher.flight import Flight, FlightDeps, FlightPolicy
from services.dispatcher.latency import Percentiles
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.providers.openai import UpstreamError
from services.dispatcher.providers.select import ProviderClient
from services.dispatcher.selection import EndpointState, Selector, StatePolicy, build_states
from shared.errors import InvalidRequest, Unavailable
from shared.pricing import ModelPrice, PriceCatalogue


@dataclass(frozen=True)
class DispatchPolicy:
    local_region: str
    attempt_timeout_s: float
    latency_window: int = 512
    eject_after_failures: int = 3
    eject_base_s: float = 2.0
    eject_max_s: float = 60.0
    max_attempts: int = 3
    hedging: bool = True
    hedge_quantile: float = 95.0
    hedge_min_delay_s: float = 0.05
    hedge_min_samples: int = 32
    hedge_max_median_multiple: float = 2.0
    budgets: BudgetPolicy = field(default_factory=BudgetPolicy)

    def flight(self) -> FlightPolicy:
        return FlightPolicy(
            attempt_timeout_s=self.attempt_timeout_s,
            max_attempts=self.max_attempts,
            hedging=self.hedging,
            hedge_quantile=self.hedge_quantile,
            hedge_min_delay_s=self.hedge_min_delay_s,
            hedge_min_samples=self.hedge_min_samples,
            hedge_max_median_multiple=self.hedge_max_median_multiple,
        )

    def states(self) -> StatePolicy:
        return StatePolicy(
            self.latency_window, self.eject_after_failures, self.eject_base_s, self.eject_max_s
        )


@dataclass(frozen=True)
class EndpointStats:
    """A snapshot of one endpoint, for the benchmark, logs and tests."""

    name: str
    region: str
    ttft: Percentiles | None
    total: Percentiles | None
    ttft_ewma_s: float | None
    ejected: bool
    in_flight: int


class Dispatcher:
    """Dispatches model calls to the best endpoint; fails over, hedges and keeps statistics."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        client: ProviderClient,
        catalogue: PriceCatalogue,
        tracer: trace.Tracer,
        policy: DispatchPolicy,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        metrics: DispatcherMetrics | None = None,
    ) -> None:
        unpriced = sorted(
            {m for e in endpoints for m in e.models if not catalogue.knows(m) and m not in e.prices}
        )
        if unpriced:
            raise ValueError(f"models served but missing from the price catalogue: {unpriced}")
        rng = rng or random.Random()
        self._catalogue = catalogue
        self._policy = policy
        self._selector = Selector(
            build_states(endpoints, policy.states(), clock), policy.local_region, rng, clock
        )
        self.budgets = Budgets(policy.budgets, clock)
        self._deps = FlightDeps(
            self._selector,
            self.budgets,
            client,
            tracer,
            self._price,
            rng,
            clock,
            metrics=metrics or DispatcherMetrics(CollectorRegistry()),
        )

    def _price(self, state: EndpointState, model: str) -> ModelPrice:
        override = state.endpoint.prices.get(model)
        return override or self._catalogue.price(model, state.endpoint.region)

    def _flight(self, call: ModelRequest, deadline: float | None) -> Flight:
        if not self._selector.serving(call.model):
            raise InvalidRequest(f"model {call.model!r} is not served by any configured endpoint")
        return Flight(self._deps, self._policy.flight(), call, deadline)

    def stats(self) -> list[EndpointStats]:
        return [
            EndpointStats(
                s.name,
                s.endpoint.region,
                s.latency.ttft.percentiles(),
                s.latency.total.percentiles(),
                s.latency.ttft.ewma,
                s.ejection.ejected,
                s.limits.in_flight,
            )
            for s in self._selector.states
        ]

    async def dispatch(self, call: ModelRequest, deadline: float | None) -> DispatchResult:
        """Calls the model and returns the whole answer."""
        flight = self._flight(call, deadline)
        try:
            while True:
                attempt, event = await flight.first_event()
                try:
                    while not isinstance(event, ProviderAnswer):
                        event = await flight.next_event(attempt)
                except UpstreamError:
                    continue  # nothing reached the caller yet: fail over like before a token
                return flight.result(attempt, event)
        finally:
            await flight.close()

    async def dispatch_stream(
        self, call: ModelRequest, deadline: float | None
    ) -> AsyncIterator[Delta | DispatchResult]:
        """Streams the answer; fails over (and hedges) only before the first token."""
        flight = self._flight(call, deadline)
        try:
            attempt, event = await flight.first_event()
            while not isinstance(event, ProviderAnswer):
                yield event
                try:
                    event = await flight.next_event(attempt)
                except UpstreamError as error:
                    raise Unavailable(f"stream broke after the first token: {error}") from None
            yield flight.result(attempt, event)
        finally:
            await flight.close()

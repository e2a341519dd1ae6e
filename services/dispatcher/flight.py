"""One dispatched request's upstream calls: the first, failovers, and at most one hedge.

1. The first call goes to the endpoint the selector picks (two choices, caller's region first).
2. If that endpoint has enough latency samples and no token has arrived by its p95 time to first
   token (never earlier than a floor), the same request goes to the best other endpoint, if the
   hedge budget allows (Dean and Barroso, "The Tail at Scale", CACM 2013: "hedged requests").
   The first call to produce a token wins; the other is cancelled and its estimated cost (the
   prompt plus the tokens it had streamed) is counted.
3. A call that fails before its first token (5xx, 429, timeout, broken connection) is failed
   over to the next endpoint after a jittered back-off, if the retry budget allows; a 4xx is the
   request's fault and ends the flight. A 429 holds its endpoint for its Retry-After; the others
   count towards the endpoint's outlier ejection.
4. Everything waits at most until the caller's deadline, which each call also gets as its
   timeout; a flight that is closed early (deadline, caller gone) cancels what is in flight.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from opentelemetry import trace
from prometheus_client import CollectorRegistry

from services.dispatcher import spans
from services.dispatcher.attempt import Attempt, Event, Tagged
from services.dispatcher.budgets import Budgets, backoff_s
from services.dispatcher.calls import Delta, DispatchResult, ModelRequest, ProviderAnswer
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.providers.openai import UpstreamError
from services.dispatcher.providers.select import ProviderClient
from services.dispatcher.selection import EndpointState, Selector
from shared.errors import DeadlineExceeded, InvalidRequest, Unavailable
from shared.pricing import ModelPrice

LOG = logging.getLogger(__name__)
# A 429 without Retry-After still means "not now": hold the endpoint this long.
_DEFAULT_HOLD_S = 1.0
# Measured calls slower than the current wait needed before they may veto a hedge.
_EVIDENCE = 3


@dataclass(frozen=True)
class FlightPolicy:
    # Bound on connecting, on the first token and on each gap between chunks of one call.
    attempt_timeout_s: float
    # Sequential calls per request (the first plus failovers); a hedge is not counted.
    max_attempts: int = 3
    hedging: bool = True
    hedge_quantile: float = 95.0
    # Never hedge sooner than this, however fast the endpoint has been.
    hedge_min_delay_s: float = 0.05
    # Never later than this multiple of the median: when slow calls are 5% or more of an
    # endpoint's (a bimodal tail), its p95 lies inside the slow mode and a hedge sent then
    # comes too late to help; the median's multiple keeps it at the fast mode's edge.
    hedge_max_median_multiple: float = 2.0
    # A p95 from fewer samples is noise; until then, no hedging on that endpoint.
    hedge_min_samples: int = 32
    backoff_base_s: float = 0.025


@dataclass(frozen=True)
class FlightDeps:
    """What every flight of one dispatcher shares."""

    selector: Selector
    budgets: Budgets
    client: ProviderClient
    tracer: trace.Tracer
    price: Callable[[EndpointState, str], ModelPrice]
    rng: random.Random
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    metrics: DispatcherMetrics = field(
        default_factory=lambda: DispatcherMetrics(CollectorRegistry())
    )


class Flight:
    """The calls made for one request; read it with first_event(), then next_event()."""

    def __init__(
        self,
        deps: FlightDeps,
        policy: FlightPolicy,
        call: ModelRequest,
        deadline: float | None,
    ) -> None:
        self._deps = deps
        self._policy = policy
        self._call = call
        self._deadline = deadline
        self._queue: asyncio.Queue[Tagged] = asyncio.Queue()
        self._live: list[Attempt] = []
        self._tried: set[str] = set()
        self._failures: list[str] = []
        self._last_error: UpstreamError | None = None
        self._sequential = 0
        self._retries = 0
        self._hedge_decided = False
        self.attempts = 0
        self.hedged = False
        self.cancelled_cost_nano_usd = 0
        deps.budgets.record_request()

    # -- time -------------------------------------------------------------------------------

    def _remaining_s(self) -> float | None:
        if self._deadline is None:
            return None
        remaining = self._deadline - self._deps.clock()
        if remaining <= 0:
            raise DeadlineExceeded("the request deadline expired before an upstream answered")
        return remaining

    async def _next_tagged(self, timer_at: float | None) -> Tagged | None:
        """The next event of any call; None when the timer (a hedge or TTFT limit) fires first."""
        remaining = self._remaining_s()
        if not self._queue.empty():
            return self._queue.get_nowait()
        waits = [w for w in (remaining,) if w is not None]
        if timer_at is not None:
            waits.append(max(0.0, timer_at - self._deps.clock()))
        try:
            return await asyncio.wait_for(self._queue.get(), min(waits) if waits else None)
        except TimeoutError:
            self._remaining_s()  # raises when it was the deadline that ran out
            return None

    # -- starting calls ---------------------------------------------------------------------

    def _launch(self, state: EndpointState, *, hedge: bool) -> Attempt:
        deps = self._deps
        remaining = self._remaining_s()
        timeout_s = self._policy.attempt_timeout_s
        if remaining is not None:
            timeout_s = min(timeout_s, remaining)
        probe = deps.selector.acquire(state)
        span = spans.start_call_span(
            deps.tracer, self._call, state.endpoint, hedge=hedge, probe=probe
        )
        attempt = Attempt(
            state,
            self._call,
            deps.client,
            self._queue,
            span,
            deps.clock,
            timeout_s,
            hedge=hedge,
            probe=probe,
        )
        attempt.task.add_done_callback(lambda _: deps.selector.release(state))
        attempt.hedge_at = self._hedge_at(attempt)
        self._tried.add(state.name)
        self._live.append(attempt)
        self.attempts += 1
        self._sequential += 0 if hedge else 1
        return attempt

    def _hedge_at(self, attempt: Attempt) -> float | None:
        """When to hedge this call: its endpoint's p95 TTFT after it started, kept between the
        minimum delay and a multiple of the median; None until the endpoint has enough samples."""
        if not self._policy.hedging or attempt.hedge:
            return None
        ttft = attempt.state.latency.ttft
        if ttft.samples < self._policy.hedge_min_samples:
            return None
        quantile = ttft.percentile(self._policy.hedge_quantile) or 0.0
        median = ttft.percentile(50.0) or 0.0
        delay = min(quantile, self._policy.hedge_max_median_multiple * median)
        return attempt.started + max(self._policy.hedge_min_delay_s, delay)

    async def _choose(self, *, first: bool) -> EndpointState:
        selector, model = self._deps.selector, self._call.model
        # Without a deadline, waiting for a slot is bounded like any other wait of a call.
        give_up = self._deps.clock() + self._policy.attempt_timeout_s
        while True:
            state = selector.pick(
                model, self._call.preferred_region, self._tried, two_choices=first
            ) or selector.last_resort(model, self._tried)
            if state is not None:
                return state
            if not selector.blocked_by_limits(model, self._tried):
                raise Unavailable(self._exhausted_message())
            remaining = self._remaining_s()
            if remaining is None:
                remaining = give_up - self._deps.clock()
                if remaining <= 0:
                    raise Unavailable(f"{self._exhausted_message()}; no endpoint had room")
            await selector.wait_for_room(model, self._tried, remaining)

    def _exhausted_message(self) -> str:
        reasons = "; ".join(self._failures) or "no endpoint admits calls"
        held = self._deps.selector.soonest_hold_s(self._call.model)
        if held is not None:
            reasons += f"; rate-limited endpoints accept calls again in {held:.1f}s"
        return f"all endpoints for model {self._call.model!r} failed: {reasons}"

    async def _start_next(self) -> None:
        """The first call, or a failover after every call in flight has failed."""
        self._remaining_s()
        if self.attempts == 0:
            self._launch(await self._choose(first=True), hedge=False)
            return
        if self._sequential >= self._policy.max_attempts:
            raise Unavailable(self._exhausted_message())
        state = await self._choose(first=False)
        if not self._deps.budgets.try_retry():
            trace.get_current_span().set_attribute(spans.RETRY_BUDGET_EXHAUSTED, True)
            self._deps.metrics.refused("retry", self._call.model)
            raise Unavailable(
                f"retry budget exhausted (too many retries across requests); "
                f"{self._exhausted_message()}"
            )
        self._retries += 1
        self._deps.metrics.retried(state.name)
        delay = backoff_s(self._retries, self._deps.rng, self._policy.backoff_base_s)
        remaining = self._remaining_s()
        await self._deps.sleep(delay if remaining is None else min(delay, remaining))
        self._launch(state, hedge=False)

    def _maybe_hedge(self) -> None:
        self._hedge_decided = True
        state = self._deps.selector.pick(
            self._call.model, self._call.preferred_region, self._tried, two_choices=False
        )
        if state is None or not self._worth_hedging(self._live[0], state):
            return
        if not self._deps.budgets.try_hedge():
            self._deps.metrics.refused("hedge", self._call.model)
            return
        self.hedged = True
        self._deps.metrics.hedged(state.name)
        self._launch(state, hedge=True)

    def _worth_hedging(self, primary: Attempt, target: EndpointState) -> bool:
        """False when the primary's own history says it will answer before the target would.

        Past p95, a call from an endpoint whose latency is one smooth hump is nearly done; a
        call from one with a slow mode has a long way to go. The measured calls that took longer
        than this one has waited tell which: if on average they needed less extra time than the
        target's median time to first token, a hedge would only cost. With fewer than
        `_EVIDENCE` such calls, there is no evidence against hedging.
        """
        waited = self._deps.clock() - primary.started
        excess, evidence = primary.state.latency.ttft.mean_excess(waited)
        if excess is None or evidence < _EVIDENCE:
            return True
        target_median = target.latency.ttft.percentile(50.0)
        if target_median is None:
            target_median = primary.state.latency.ttft.percentile(50.0) or 0.0
        return excess > target_median

    def _hedge_due_at(self) -> float | None:
        if self._hedge_decided or len(self._live) != 1:
            return None
        return self._live[0].hedge_at

    def _timer_at(self) -> float | None:
        """The next hedge time or first-token limit of the calls in flight."""
        timers = [a.first_token_by for a in self._live if a.first_token_at is None]
        hedge_at = self._hedge_due_at()
        if hedge_at is not None:
            timers.append(hedge_at)
        return min(timers) if timers else None

    async def _on_timer(self) -> None:
        now = self._deps.clock()
        for attempt in [a for a in self._live if a.first_token_at is None]:
            if attempt.first_token_by <= now:
                # Enforced here, not only by httpx, so that it holds for any transport.
                await attempt.cancel()
                error = UpstreamError(attempt.state.name, "timeout", "no first token in time")
                attempt.state.latency.record_censored(now - attempt.started)
                self._failed(attempt, error)
        hedge_at = self._hedge_due_at()
        if hedge_at is not None and hedge_at <= now:
            self._maybe_hedge()

    # -- outcomes ---------------------------------------------------------------------------

    def _failed(self, attempt: Attempt, error: UpstreamError) -> None:
        self._live.remove(attempt)
        self._failures.append(str(error))
        self._last_error = error
        state = attempt.state
        if error.status == 429:
            state.hold.hold(_DEFAULT_HOLD_S if error.retry_after_s is None else error.retry_after_s)
            if attempt.probe:
                state.ejection.abandon_probe()
        elif error.counts_against_endpoint:
            ejections = state.ejection.ejections
            state.ejection.record_failure()
            if state.ejection.ejections > ejections:
                self._deps.metrics.ejected(state.name)
        else:
            # The endpoint answered, if only to say the request was wrong: it is alive.
            state.ejection.record_success()
        spans.end_failed(attempt.span, error)
        LOG.warning("upstream call failed: %s", error)
        if not error.retryable:
            # The log above names the endpoint for operators; the caller gets the provider's
            # own words, without the gateway's endpoint names.
            status = f" with {error.status}" if error.status else ""
            raise InvalidRequest(
                f"the model's provider rejected the request{status}: {error.message}"
            )

    async def _cancel(self, attempt: Attempt, *, lost: bool) -> None:
        await attempt.cancel()
        self._live.remove(attempt)
        state = attempt.state
        if attempt.probe:
            state.ejection.abandon_probe()
        if not lost:
            spans.end_failed(attempt.span, "cancelled: the request ended first")
            return
        if attempt.first_token_at is None:
            state.latency.record_censored(self._deps.clock() - attempt.started)
        # Off the event loop: the first estimate loads the token encoding (0.3-0.8 s, once).
        usage = await asyncio.to_thread(
            self._deps.client.estimate_usage, self._call, "".join(attempt.text)
        )
        cost = self._deps.price(state, self._call.model).cost_nano_usd(usage)
        self.cancelled_cost_nano_usd += cost
        spans.end_cancelled(attempt.span, cost)

    async def first_event(self) -> tuple[Attempt, Delta | ProviderAnswer]:
        """Runs calls until one yields a first token or answer; the others are cancelled."""
        while True:
            if not self._live:
                await self._start_next()
            tagged = await self._next_tagged(self._timer_at())
            if tagged is None:
                await self._on_timer()
                continue
            attempt, event = tagged
            if attempt not in self._live:
                continue  # an event queued by a call cancelled meanwhile
            if isinstance(event, UpstreamError):
                self._failed(attempt, event)
                continue
            for other in [a for a in self._live if a is not attempt]:
                await self._cancel(other, lost=True)
            return attempt, event

    async def next_event(self, attempt: Attempt) -> Delta | ProviderAnswer:
        """The winning call's next event; raises UpstreamError when its stream breaks."""
        while True:
            tagged = await self._next_tagged(None)
            if tagged is None or tagged[0] is not attempt:
                continue
            event: Event = tagged[1]
            if isinstance(event, UpstreamError):
                self._failed(attempt, event)
                raise event
            return event

    def result(self, attempt: Attempt, answer: ProviderAnswer) -> DispatchResult:
        """Records the winner's latency and success, and prices the whole flight."""
        self._live.remove(attempt)
        state = attempt.state
        now = self._deps.clock()
        first = attempt.first_token_at if attempt.first_token_at is not None else now
        ttft_s, total_s = first - attempt.started, now - attempt.started
        state.latency.record(ttft_s, total_s)
        state.ejection.record_success()
        if attempt.hedge:
            self._deps.metrics.hedge_won(state.name)
        if answer.reported_cost_usd is not None:
            own = round(answer.reported_cost_usd * 1e9)
        else:
            # Priced by the requested model: providers often answer with a dated alias of it.
            own = self._deps.price(state, self._call.model).cost_nano_usd(answer.usage)
        result = DispatchResult(
            answer=answer,
            endpoint=state.name,
            region=state.endpoint.region,
            cost_nano_usd=own + self.cancelled_cost_nano_usd,
            latency_s=total_s,
            attempts=self.attempts,
            ttft_s=ttft_s,
            hedged=self.hedged,
            hedge_won=attempt.hedge,
            cancelled_cost_nano_usd=self.cancelled_cost_nano_usd,
        )
        spans.end_won(attempt.span, result, own)
        return result

    async def close(self) -> None:
        """Cancels whatever is still in flight and returns the retries this flight spent."""
        for attempt in list(self._live):
            await self._cancel(attempt, lost=False)
        for _ in range(self._retries):
            self._deps.budgets.retry_done()
        self._retries = 0

"""Chooses endpoints for a model call and fails over across regions.

Order of attempts: endpoints in the preferred (or local) region first, then the others by their
EWMA latency; ejected or rate-limited endpoints go last, as a last resort rather than never.
Each attempt gets the smaller of the per-attempt timeout and what is left of the caller's
deadline, so a slow region can never eat the whole budget of a request that another region
could still answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.dispatcher.calls import Delta, DispatchResult, ModelRequest, ProviderAnswer
from services.dispatcher.endpoints import Endpoint
from services.dispatcher.latency import Ejection, LatencyTracker, Percentiles
from services.dispatcher.providers.openai import OpenAICompatibleClient, UpstreamError
from shared import telemetry as attrs
from shared.errors import DeadlineExceeded, InvalidRequest, Unavailable
from shared.pricing import PriceCatalogue

LOG = logging.getLogger(__name__)


@dataclass
class EndpointState:
    endpoint: Endpoint
    latency: LatencyTracker
    ejection: Ejection


@dataclass(frozen=True)
class DispatchPolicy:
    local_region: str
    attempt_timeout_s: float
    latency_window: int = 512
    eject_after_failures: int = 3
    eject_base_s: float = 2.0


class Dispatcher:
    """Dispatches model calls to the best endpoint, failing over on retryable errors."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        client: OpenAICompatibleClient,
        catalogue: PriceCatalogue,
        tracer: trace.Tracer,
        policy: DispatchPolicy,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        unpriced = sorted({m for e in endpoints for m in e.models if not catalogue.knows(m)})
        if unpriced:
            raise ValueError(f"models served but missing from the price catalogue: {unpriced}")
        self._states = [
            EndpointState(
                e,
                LatencyTracker(policy.latency_window),
                Ejection(policy.eject_after_failures, policy.eject_base_s, clock),
            )
            for e in endpoints
        ]
        self._client = client
        self._catalogue = catalogue
        self._tracer = tracer
        self._policy = policy
        self._clock = clock

    def candidates(self, model: str, preferred_region: str = "") -> list[EndpointState]:
        """Endpoints serving the model, in the order they should be tried."""
        region = preferred_region or self._policy.local_region
        serving = [s for s in self._states if model in s.endpoint.models]
        if not serving:
            raise InvalidRequest(f"model {model!r} is not served by any configured endpoint")

        def rank(state: EndpointState) -> tuple[bool, bool, float]:
            ewma = state.latency.ewma
            return (state.ejection.ejected, state.endpoint.region != region, ewma or 0.0)

        return sorted(serving, key=rank)

    def latency_percentiles(self) -> dict[str, Percentiles | None]:
        return {s.endpoint.name: s.latency.percentiles() for s in self._states}

    def _attempt_timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self._policy.attempt_timeout_s
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise DeadlineExceeded("the request deadline expired before an upstream answered")
        return min(self._policy.attempt_timeout_s, remaining)

    def _record_failure(self, state: EndpointState, error: UpstreamError) -> None:
        state.ejection.record_failure()
        if error.retry_after_s is not None:
            state.ejection.ejected_until = max(
                state.ejection.ejected_until, self._clock() + error.retry_after_s
            )
        LOG.warning("upstream attempt failed: %s", error)

    def _result(
        self,
        call: ModelRequest,
        state: EndpointState,
        answer: ProviderAnswer,
        started: float,
        attempts: int,
    ) -> DispatchResult:
        elapsed = self._clock() - started
        state.latency.record(elapsed)
        state.ejection.record_success()
        if answer.reported_cost_usd is not None:
            cost = round(answer.reported_cost_usd * 1e9)
        else:
            # Priced by the requested model: providers often answer with a dated alias of it.
            cost = self._catalogue.cost_nano_usd(call.model, answer.usage, state.endpoint.region)
        return DispatchResult(
            answer, state.endpoint.name, state.endpoint.region, cost, elapsed, attempts
        )

    def _start_span(self, call: ModelRequest, state: EndpointState) -> trace.Span:
        span = self._tracer.start_span(f"chat {call.model}", kind=SpanKind.CLIENT)
        span.set_attributes(
            {
                attrs.GEN_AI_OPERATION: "chat",
                attrs.GEN_AI_SYSTEM: state.endpoint.provider,
                attrs.GEN_AI_REQUEST_MODEL: call.model,
                attrs.STAGE: "dispatch",
                attrs.TIER: call.tier,
                attrs.REGION: state.endpoint.region,
                attrs.DISPATCH_ENDPOINT: state.endpoint.name,
            }
        )
        return span

    @staticmethod
    def _end_span(span: trace.Span, result: DispatchResult) -> None:
        answer = result.answer
        span.set_attributes(
            {
                attrs.GEN_AI_RESPONSE_MODEL: answer.model,
                attrs.GEN_AI_INPUT_TOKENS: answer.usage.input_tokens,
                attrs.GEN_AI_OUTPUT_TOKENS: answer.usage.output_tokens,
                attrs.GEN_AI_FINISH_REASONS: [answer.finish.value],
                attrs.COST_USD: attrs.usd(result.cost_nano_usd),
            }
        )
        span.end()

    @staticmethod
    def _fail_span(span: trace.Span, error: Exception) -> None:
        span.set_status(Status(StatusCode.ERROR, str(error)))
        span.end()

    async def dispatch(self, call: ModelRequest, deadline: float | None) -> DispatchResult:
        """Calls the model, trying endpoints in order until one answers."""
        failures: list[str] = []
        for attempt, state in enumerate(self.candidates(call.model, call.preferred_region), 1):
            timeout = self._attempt_timeout(deadline)
            span = self._start_span(call, state)
            started = self._clock()
            try:
                with trace.use_span(span, end_on_exit=False):
                    answer = await self._client.chat(state.endpoint, call, timeout)
            except UpstreamError as error:
                self._fail_span(span, error)
                self._record_failure(state, error)
                if not error.retryable:
                    raise InvalidRequest(f"upstream rejected the request: {error}") from None
                failures.append(str(error))
                continue
            result = self._result(call, state, answer, started, attempt)
            self._end_span(span, result)
            return result
        raise Unavailable(f"all endpoints for model {call.model!r} failed: {'; '.join(failures)}")

    async def dispatch_stream(
        self, call: ModelRequest, deadline: float | None
    ) -> AsyncIterator[Delta | DispatchResult]:
        """Streams the answer; fails over only while no text has been sent to the caller."""
        failures: list[str] = []
        for attempt, state in enumerate(self.candidates(call.model, call.preferred_region), 1):
            timeout = self._attempt_timeout(deadline)
            span = self._start_span(call, state)
            started = self._clock()
            sent_text = False
            try:
                with trace.use_span(span, end_on_exit=False):
                    async for event in self._client.stream(state.endpoint, call, timeout):
                        if isinstance(event, Delta):
                            sent_text = True
                            yield event
                        else:
                            result = self._result(call, state, event, started, attempt)
                            self._end_span(span, result)
                            yield result
                            return
            except UpstreamError as error:
                self._fail_span(span, error)
                self._record_failure(state, error)
                if sent_text:
                    raise Unavailable(f"stream broke after the first token: {error}") from None
                if not error.retryable:
                    raise InvalidRequest(f"upstream rejected the request: {error}") from None
                failures.append(str(error))
        raise Unavailable(f"all endpoints for model {call.model!r} failed: {'; '.join(failures)}")

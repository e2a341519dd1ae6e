"""What the router's two HTTP front doors share: OpenAI's chat completions (http_api.py) and
Anthropic's messages (anthropic/door.py) differ in their wire formats, not in how a request is
authenticated, answered under its baggage, or streamed under its own span."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse

from services.router.model import ChatRequest, RouteResult, TierDelta
from services.router.pipeline import Pipeline
from shared.streams import relay
from shared.telemetry import trace_id_of, with_request_baggage

_KEY_HEADERS = frozenset({b"authorization", b"x-api-key"})


def api_key(request: Request, *, first: str) -> str:
    """The caller's key from `x-api-key` or `authorization: Bearer <key>`; `first` names the
    header each door's own API reads first, for a request that sends both."""
    # One pass over the raw headers (lower-case names, as ASGI servers give them), the first
    # of each kept as Starlette's Headers.get would: this runs on every request.
    found: dict[bytes, str] = {}
    for name, value in request.scope["headers"]:
        if name in _KEY_HEADERS and name not in found:
            found[name] = value.decode("latin-1")
    bearer = found.get(b"authorization", "")
    keys = {
        "x-api-key": found.get(b"x-api-key", "").strip(),
        "authorization": bearer[7:].strip() if bearer.lower().startswith("bearer ") else "",
    }
    other = next(name for name in keys if name != first)
    return keys[first] or keys[other]


def end_span(span: trace.Span) -> None:
    if span.is_recording():
        span.end()


def streaming_response(
    tracer: trace.Tracer,
    span_name: str,
    request: Request,
    chat: ChatRequest,
    body: Callable[[trace.Span], AsyncIterator[bytes]],
) -> StreamingResponse:
    """A stream under a server span of its own. The span is started here, not attached, so
    the headers can name its trace; it ends with the stream, whoever ends it."""
    parent = propagate.extract(dict(request.headers))
    span = tracer.start_span(span_name, context=parent, kind=SpanKind.SERVER)
    headers = {
        "x-sluice-trace-id": trace_id_of(span),
        "x-sluice-policy-version": chat.policy_version,
    }
    return StreamingResponse(
        body(span),
        media_type="text/event-stream",
        headers=headers,
        background=BackgroundTask(end_span, span),
    )


def relayed_events(
    pipeline: Pipeline, chat: ChatRequest, request: Request, span: trace.Span, deadline_s: float
) -> AsyncGenerator[TierDelta | RouteResult]:
    """The pipeline's stream, run under `span` and the request's baggage in a task of its own
    (shared/streams.py): nothing is attached in the caller's generator, which a disconnect
    may leave to be finalised in another context. Use it under `contextlib.aclosing`."""
    parent = propagate.extract(dict(request.headers))
    baggage = with_request_baggage(chat.tenant.tenant_id, chat.policy_version, parent)
    events = pipeline.run(chat, time.monotonic() + deadline_s, stream=True)
    return relay(events, trace.set_span_in_context(span, baggage))


def framed_tiers(chat: ChatRequest) -> tuple[frozenset[int], dict[int, str]]:
    """For a stream framer: the tiers whose pieces stream live (a cache hit, tier 0, and the
    last tier, which no gate can reject) and each tier's model."""
    tiers = chat.model_class.tiers
    return frozenset({0, tiers[-1].index}), {tier.index: tier.model for tier in tiers}

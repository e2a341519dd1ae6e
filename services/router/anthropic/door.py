"""`POST /v1/messages`: the Anthropic Messages API on the same admission and pipeline as the
OpenAI door (http_api.py), so the cache, compressor, cascade, batcher, dispatcher, cost lines
and traces are the same whichever SDK a caller uses.

Only the wire differs: the key comes in `x-api-key` (or a Bearer token), `anthropic-version`
is checked first, and every error, before the stream or inside it, is Anthropic's error shape.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.router.admission import Admission, off_loop
from services.router.admission_checks import bad
from services.router.answering import answer_admitted
from services.router.anthropic.request import MessagesCall, check_version, read_messages_call
from services.router.anthropic.response import error_body, error_of, message_body, status_of
from services.router.anthropic.stream import MessageFramer, sse
from services.router.front_doors import (
    api_key,
    end_span,
    framed_tiers,
    relayed_events,
    streaming_response,
)
from services.router.model import ChatRequest, TierDelta
from services.router.openai.response import sluice_headers
from services.router.pipeline import Pipeline
from services.router.public_errors import public_error
from shared.errors import SluiceError
from shared.telemetry import current_trace_id, trace_id_of

SPAN_NAME = "POST /v1/messages"


def error_response(error: SluiceError, call: MessagesCall | None = None) -> JSONResponse:
    status, body = error_of(public_error(error), call)
    return JSONResponse(body, status_code=status)


def shaped_error(status: int, kind: str, message: str, **headers: str) -> JSONResponse:
    """An error this door answers itself (an unknown path under /v1/messages, a refused body)."""
    return JSONResponse(error_body(kind, message), status_code=status, headers=headers or None)


class MessagesDoor:
    """The handler; it only translates between Anthropic's wire and admission/pipeline."""

    def __init__(
        self, admission: Admission, pipeline: Pipeline, tracer: trace.Tracer, deadline_s: float
    ) -> None:
        self._admission = admission
        self._pipeline = pipeline
        self._tracer = tracer
        self._deadline_s = deadline_s

    async def _read(self, request: Request) -> tuple[MessagesCall, ChatRequest]:
        check_version(request.headers.get("anthropic-version"))
        if "anthropic-beta" in request.headers:
            raise bad("anthropic-beta", "header is not supported by this gateway: it runs no betas")
        # BodyLimit has read the body already, within the size limit and read timeout.
        raw = await request.body()
        call = await off_loop(len(raw), read_messages_call, raw)
        try:
            chat = await self._admission.admit_async(
                api_key(request, first="x-api-key"), call.asked
            )
        except SluiceError as error:
            raise _Named(error, call) from None
        return call, chat

    async def create(self, request: Request) -> Response:
        try:
            call, chat = await self._read(request)
        except _Named as named:
            return error_response(named.error, named.call)
        except SluiceError as error:
            return error_response(error)
        if call.stream:
            return streaming_response(
                self._tracer,
                SPAN_NAME,
                request,
                chat,
                lambda span: self._stream(request, chat, span),
            )
        parent = propagate.extract(dict(request.headers))
        with self._tracer.start_as_current_span(SPAN_NAME, context=parent, kind=SpanKind.SERVER):
            try:
                deadline = time.monotonic() + self._deadline_s
                result = await answer_admitted(self._pipeline, chat, deadline)
            except SluiceError as error:
                return error_response(error)
            trace_id = current_trace_id()
        return Response(
            orjson.dumps(message_body(result, trace_id)),
            media_type="application/json",
            headers=sluice_headers(result, trace_id),
        )

    async def _stream(
        self, request: Request, chat: ChatRequest, span: trace.Span
    ) -> AsyncIterator[bytes]:
        """Relays the pipeline's events as Anthropic's; nothing is attached to the context
        here, for the reason http_api.FrontDoor._stream gives."""
        framer = MessageFramer(chat.request_id, chat.prompt_tokens, *framed_tiers(chat))
        events = relayed_events(self._pipeline, chat, request, span, self._deadline_s)
        try:
            async with aclosing(events) as relayed:
                async for event in relayed:
                    if isinstance(event, TierDelta):
                        framed = framer.delta(event)
                    else:
                        framed = framer.closing(event, trace_id_of(span))
                    if framed:
                        yield sse(framed)
        except SluiceError as error:
            # Headers are sent by now; Anthropic's streams carry an `error` event instead.
            public = public_error(error)
            _, kind = status_of(public.code)
            yield sse([("error", error_body(kind, str(public)))])
        finally:
            end_span(span)


class _Named(Exception):
    """An admission error with the call it was found in, to name its field in this API."""

    def __init__(self, error: SluiceError, call: MessagesCall) -> None:
        super().__init__(str(error))
        self.error = error
        self.call = call


def not_routed(request: Request, status: int, headers: dict[str, Any] | None) -> JSONResponse:
    """A path or method under /v1/messages that this door does not serve."""
    if status == 405:
        return shaped_error(
            405, "invalid_request_error", f"{request.method} is not allowed on {request.url.path}"
        )
    message = f"unknown path {request.url.path!r}; this gateway serves POST /v1/messages"
    return shaped_error(404, "not_found_error", message, **(headers or {}))

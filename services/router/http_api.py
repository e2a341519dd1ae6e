"""The OpenAI-compatible front door: `POST /v1/chat/completions` (plain and SSE) and
`GET /v1/models`, served by the router process beside its gRPC port.

It runs the same admission and pipeline as RouterService.Complete, so an OpenAI SDK pointed at
`http://<router>:<port>/v1` gets the cascade, the cache and the cost accounting unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import orjson
import uvicorn
from opentelemetry import propagate, trace
from opentelemetry.context import attach, detach
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.router.admission import Admission, Asked, off_loop
from services.router.http_limits import BodyLimit, DoorLimits, ErrorShield, guarded_protocol
from services.router.model import ChatRequest, RouteResult, TierDelta
from services.router.openai_wire import (
    ChatCall,
    chunk,
    completion_body,
    error_body,
    error_of,
    final_chunks,
    read_chat_call,
    sluice_headers,
)
from services.router.pipeline import Pipeline, complete
from services.router.policy import Policy
from services.router.public_errors import public_error
from shared.errors import SluiceError, Unauthenticated
from shared.streams import relay
from shared.telemetry import current_trace_id, trace_id_of, with_request_baggage

# How long shutdown waits for cache stores still running; inside the drain budget that
# shared/grpc_server.py explains (k8s grace 30 s).
STORE_DRAIN_S = 5.0


def _api_key(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key", "").strip()


def _error(error: SluiceError) -> JSONResponse:
    status, body = error_of(public_error(error))
    return JSONResponse(body, status_code=status)


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class FrontDoor:
    """Request handlers; they only translate between HTTP and admission/pipeline."""

    def __init__(
        self,
        admission: Admission,
        pipeline: Pipeline,
        policy: Policy,
        tracer: trace.Tracer,
        deadline_s: float,
    ) -> None:
        self._admission = admission
        self._pipeline = pipeline
        self._policy = policy
        self._tracer = tracer
        self._deadline_s = deadline_s

    async def _admit(self, request: Request, call: ChatCall) -> ChatRequest:
        return await self._admission.admit_async(
            _api_key(request),
            Asked(
                model_class=call.model_class,
                turns=call.turns,
                sampling=call.sampling,
                cache_mode=call.cache_mode,
                response_format=call.response_format,
            ),
        )

    @contextlib.contextmanager
    def _server_span(self, request: Request) -> Iterator[trace.Span]:
        parent = propagate.extract(dict(request.headers))
        with self._tracer.start_as_current_span(
            "POST /v1/chat/completions", context=parent, kind=SpanKind.SERVER
        ) as span:
            yield span

    async def chat_completions(self, request: Request) -> Response:
        # BodyLimit has read the body already, within the size limit and read timeout.
        raw = await request.body()
        try:
            call = await off_loop(len(raw), read_chat_call, raw)
        except SluiceError as error:
            return _error(error)
        if call.stream:
            # Admitted up front, so a bad key or request gets its status code, not a 200 stream.
            try:
                chat = await self._admit(request, call)
            except SluiceError as error:
                return _error(error)
            return StreamingResponse(self._stream(request, chat), media_type="text/event-stream")
        with self._server_span(request):
            try:
                chat = await self._admit(request, call)
                token = attach(with_request_baggage(chat.tenant.tenant_id, chat.policy_version))
                try:
                    result = await complete(
                        self._pipeline, chat, time.monotonic() + self._deadline_s
                    )
                finally:
                    detach(token)
            except SluiceError as error:
                return _error(error)
            trace_id = current_trace_id()
        return Response(
            orjson.dumps(completion_body(result, trace_id)),
            media_type="application/json",
            headers=sluice_headers(result, trace_id),
        )

    async def _stream(self, request: Request, chat: ChatRequest) -> AsyncIterator[bytes]:
        """Streams the accepted answer. Text of a tier that may still be rejected is held back
        (OpenAI clients cannot take text back); the last tier is always accepted, so its text
        streams as it arrives.

        Nothing is attached to the context here: when a client disconnects, Starlette may drop
        this generator at a yield and the collector finalises it in another context. The
        pipeline runs under the request's span in a task of its own (shared/streams.py), which
        the disconnect cancels; this generator only frames what it relays."""
        parent = propagate.extract(dict(request.headers))
        span = self._tracer.start_span(
            "POST /v1/chat/completions", context=parent, kind=SpanKind.SERVER
        )
        baggage = with_request_baggage(chat.tenant.tenant_id, chat.policy_version, parent)
        events = self._pipeline.run(chat, time.monotonic() + self._deadline_s, stream=True)
        last_tier = chat.model_class.tiers[-1].index
        held: list[str] = []
        attempt = 0
        started = False
        try:
            async with aclosing(relay(events, trace.set_span_in_context(span, baggage))) as relayed:
                async for event in relayed:
                    if isinstance(event, TierDelta):
                        if event.attempt != attempt:
                            attempt, held = event.attempt, []
                        if event.tier in (last_tier, 0):
                            started = True
                            delta = {"role": "assistant", "content": event.text}
                            yield _sse(chunk(chat.request_id, "", delta))
                        else:
                            held.append(event.text)
                        continue
                    yield b"".join(
                        self._closing(event, held if not started else [], trace_id_of(span))
                    )
        except SluiceError as error:
            # Headers are sent by now; an error event is what OpenAI's streams use.
            _, body = error_body(error.code, str(error))
            yield _sse(body) + b"data: [DONE]\n\n"
        finally:
            span.end()

    @staticmethod
    def _closing(result: RouteResult, held: list[str], trace_id: str) -> Iterator[bytes]:
        if held:
            yield _sse(
                chunk(
                    result.request_id, result.model, {"role": "assistant", "content": "".join(held)}
                )
            )
        for payload in final_chunks(result, trace_id):
            yield _sse(payload)
        yield b"data: [DONE]\n\n"

    async def drain(self) -> None:
        await self._pipeline.drain(STORE_DRAIN_S)

    async def models(self, request: Request) -> Response:
        try:
            tenant = self._policy.authenticate(_api_key(request))
        except Unauthenticated as error:
            return _error(error)
        data = [
            {"id": name, "object": "model", "owned_by": "sluice"} for name in tenant.model_classes
        ]
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": "auto", "object": "model", "owned_by": "sluice"}, *data],
            }
        )


def build_http_app(front_door: FrontDoor, limits: DoorLimits | None = None) -> Starlette:
    """The front door's routes behind its body limits and its last-resort error handler."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # The router stops its HTTP side after the gRPC side has drained, so every answered
        # request has handed over its cache store by now; write them before the process exits.
        await front_door.drain()

    return Starlette(
        routes=[
            Route("/v1/chat/completions", front_door.chat_completions, methods=["POST"]),
            Route("/v1/models", front_door.models, methods=["GET"]),
        ],
        lifespan=lifespan,
        middleware=[
            Middleware(ErrorShield),
            Middleware(BodyLimit, limits=limits or DoorLimits()),
        ],
    )


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the router process: signals belong to the gRPC side, which stops us."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    def __init__(self, app: Starlette, address: str, limits: DoorLimits | None = None) -> None:
        host, _, port = address.rpartition(":")
        limits = limits or DoorLimits()
        config = uvicorn.Config(
            app,
            host=host,
            port=int(port),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=10,
            # httptools, plus the header size limit and read timeouts it lacks (http_limits).
            http=guarded_protocol(limits),
            timeout_keep_alive=limits.keep_alive_s,
            limit_concurrency=limits.max_connections,
        )
        self._server = _EmbeddedServer(config)
        self._config = config
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Binds, starts serving in the background, and returns the bound port."""
        sock = self._config.bind_socket()
        # Listening before uvicorn starts queues early connections instead of refusing them.
        sock.listen(self._config.backlog)
        port: int = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        return port

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task

"""The HTTP front door, served by the router process beside its gRPC port: OpenAI's
`POST /v1/chat/completions` (plain and SSE), `GET /v1/models` and `GET /v1/models/{id}`, and
Anthropic's `POST /v1/messages` (anthropic/door.py). Any other path or method is a 404 or 405
in OpenAI's error shape, or in Anthropic's under /v1/messages.

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

import grpc
import orjson
import uvicorn
from opentelemetry import propagate, trace
from opentelemetry.context import attach, detach
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.router.admission import Admission, Draft, off_loop
from services.router.answering import answer_unary
from services.router.anthropic.door import MessagesDoor, not_routed
from services.router.front_doors import (
    api_key,
    end_span,
    framed_tiers,
    relayed_events,
    streaming_response,
)
from services.router.http_limits import (
    App,
    BodyLimit,
    DoorLimits,
    ErrorShield,
    Receive,
    Scope,
    Send,
    guarded_protocol,
)
from services.router.known_drafts import KnownDrafts
from services.router.model import ChatRequest, TierDelta
from services.router.openai.request import ChatCall, read_chat_call
from services.router.openai.response import (
    completion_body,
    error_body,
    error_of,
    sluice_headers,
)
from services.router.openai.stream import StreamFramer
from services.router.pipeline import Pipeline
from services.router.policy import Policy, TenantPolicy
from services.router.public_errors import public_error
from shared.errors import SluiceError, Unauthenticated, quoted
from shared.telemetry import current_trace_id, trace_id_of

# How long shutdown waits for cache stores still running; inside the drain budget that
# shared/grpc_server.py explains (k8s grace 30 s).
STORE_DRAIN_S = 5.0


CHAT_PATH = "/v1/chat/completions"
SPAN_NAME = f"POST {CHAT_PATH}"


def _api_key(request: Request) -> str:
    return api_key(request, first="authorization")


def _error(error: SluiceError) -> JSONResponse:
    status, body = error_of(public_error(error))
    return JSONResponse(body, status_code=status)


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _model_json(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "sluice"}


def _model_names(tenant: TenantPolicy) -> list[str]:
    """`auto` (the tenant's default class), then its model classes."""
    return ["auto", *tenant.model_classes]


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
        self._messages = MessagesDoor(admission, pipeline, tracer, deadline_s)
        self._known = KnownDrafts()

    async def _admit(self, request: Request, call: ChatCall) -> ChatRequest:
        return await self._admission.admit_async(_api_key(request), call.asked())

    @contextlib.contextmanager
    def _server_span(self, request: Request) -> Iterator[trace.Span]:
        """What the tracer's start_as_current_span does (an exception is recorded on the span,
        which ends either way), without its two nested context managers per request."""
        # Headers are a mapping with case-insensitive keys already: no copy needed.
        parent = propagate.extract(request.headers)
        span = self._tracer.start_span(SPAN_NAME, context=parent, kind=SpanKind.SERVER)
        token = attach(trace.set_span_in_context(span))
        try:
            yield span
        except Exception as error:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            raise
        finally:
            detach(token)
            span.end()

    async def chat_asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`chat_completions` as a plain ASGI app behind BodyLimit (_DoorApp), whose first
        message is the whole body, read within the size limit and read timeout."""
        first = await receive()
        response = await self._chat(Request(scope, receive), first["body"])
        await response(scope, receive, send)

    async def chat_completions(self, request: Request) -> Response:
        # BodyLimit has read the body already, within the size limit and read timeout.
        return await self._chat(request, await request.body())

    async def _chat(self, request: Request, raw: bytes) -> Response:
        key = _api_key(request)
        # The draft of a unary body this caller sent before (known_drafts.py), or the body
        # read now.
        read: Draft | ChatCall | None = self._known.get(key, raw)
        if read is None:
            try:
                read = await off_loop(len(raw), read_chat_call, raw)
            except SluiceError as error:
                return _error(error)
        if isinstance(read, ChatCall) and read.stream:
            return await self._streamed(request, read)
        with self._server_span(request):
            try:
                draft = read if isinstance(read, Draft) else await self._draft(key, raw, read)
                chat, result = await answer_unary(
                    self._admission, self._pipeline, draft, time.monotonic() + self._deadline_s
                )
            except SluiceError as error:
                return _error(error)
            trace_id = current_trace_id()
        body = completion_body(result, trace_id, int(time.time()), logprobs=chat.sampling.logprobs)
        return Response(
            orjson.dumps(body),
            media_type="application/json",
            headers=sluice_headers(result, trace_id),
        )

    async def _draft(self, key: str, raw: bytes, call: ChatCall) -> Draft:
        draft = await self._admission.draft_async(key, call.asked())
        self._known.keep(key, raw, draft)
        return draft

    async def _streamed(self, request: Request, call: ChatCall) -> Response:
        # Admitted up front, so a bad key or request gets its status code, not a 200 stream.
        try:
            chat = await self._admit(request, call)
        except SluiceError as error:
            return _error(error)
        return streaming_response(
            self._tracer,
            SPAN_NAME,
            request,
            chat,
            lambda span: self._stream(request, chat, call, span),
        )

    async def _stream(
        self, request: Request, chat: ChatRequest, call: ChatCall, span: trace.Span
    ) -> AsyncIterator[bytes]:
        """Streams the accepted answer, framed as OpenAI streams (openai/stream.py, which also
        says what is held back while a tier may still be rejected).

        Nothing is attached to the context here: when a client disconnects, Starlette may drop
        this generator at a yield and the collector finalises it in another context. The
        pipeline runs under the request's span in a task of its own (shared/streams.py), which
        the disconnect cancels; this generator only frames what it relays."""
        framer = StreamFramer(
            chat.request_id,
            int(time.time()),
            *framed_tiers(chat),
            include_usage=call.include_usage,
            logprobs=chat.sampling.logprobs,
        )
        events = relayed_events(self._pipeline, chat, request, span, self._deadline_s)
        try:
            async with aclosing(events) as relayed:
                async for event in relayed:
                    if isinstance(event, TierDelta):
                        chunks = framer.delta(event)
                    else:
                        chunks = framer.closing(event, trace_id_of(span))
                    if chunks:
                        yield b"".join(_sse(payload) for payload in chunks)
            yield b"data: [DONE]\n\n"
        except SluiceError as error:
            # Headers are sent by now; an error event is what OpenAI's streams use.
            _, body = error_body(error.code, str(public_error(error)))
            yield _sse(body) + b"data: [DONE]\n\n"
        finally:
            end_span(span)

    async def messages(self, request: Request) -> Response:
        """Anthropic's `POST /v1/messages` (anthropic/door.py)."""
        return await self._messages.create(request)

    async def drain(self) -> None:
        await self._pipeline.drain(STORE_DRAIN_S)

    def _tenant(self, request: Request) -> TenantPolicy:
        return self._policy.authenticate(_api_key(request))

    async def models(self, request: Request) -> Response:
        try:
            tenant = self._tenant(request)
        except Unauthenticated as error:
            return _error(error)
        data = [_model_json(name) for name in _model_names(tenant)]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        try:
            tenant = self._tenant(request)
        except Unauthenticated as error:
            return _error(error)
        name = request.path_params["model"]
        if name in _model_names(tenant):
            return JSONResponse(_model_json(name))
        status, body = error_body(
            grpc.StatusCode.NOT_FOUND,
            f"the model {quoted(name)} does not exist; GET /v1/models lists them",
            "model",
            "model_not_found",
        )
        return JSONResponse(body, status_code=status)


async def _not_routed(request: Request, error: Exception) -> Response:
    """A path or method the front door does not serve, in OpenAI's error shape (Anthropic's
    under /v1/messages, where only Anthropic's clients call)."""
    status = error.status_code if isinstance(error, HTTPException) else 404
    headers = dict(error.headers or {}) if isinstance(error, HTTPException) else None
    if request.url.path.startswith("/v1/messages"):
        return not_routed(request, status, headers)
    if status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
        kind, code = "invalid_request_error", "method_not_allowed"
    else:
        message = (
            f"unknown path {quoted(request.url.path)}; "
            "this gateway serves /v1/chat/completions, /v1/models and /v1/messages"
        )
        kind, code = "invalid_request_error", "unknown_url"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class _DoorApp(Starlette):
    """Starlette, with `POST /v1/chat/completions` handed straight to `chat`: the route behind
    its own copies of the same two middlewares, ahead of Starlette's error and exception
    middleware and its router, which cost about 10 us of CPU a request and do nothing for this
    route (it raises no HTTPException; ErrorShield answers any other error). Anything else,
    including this path under a root_path, goes through Starlette as before."""

    def __init__(self, chat: App, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._chat = chat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == CHAT_PATH
            and scope["method"] == "POST"
            and not scope.get("root_path")
        ):
            scope["app"] = self
            await self._chat(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def build_http_app(front_door: FrontDoor, limits: DoorLimits | None = None) -> Starlette:
    """The front door's routes behind its body limits and its last-resort error handler."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # The router stops its HTTP side after the gRPC side has drained, so every answered
        # request has handed over its cache store by now; write them before the process exits.
        await front_door.drain()

    limits = limits or DoorLimits()
    return _DoorApp(
        ErrorShield(BodyLimit(front_door.chat_asgi, limits=limits)),
        routes=[
            Route(CHAT_PATH, front_door.chat_completions, methods=["POST"]),
            Route("/v1/messages", front_door.messages, methods=["POST"]),
            Route("/v1/models", front_door.models, methods=["GET"]),
            Route("/v1/models/{model:path}", front_door.model, methods=["GET"]),
        ],
        exception_handlers={404: _not_routed, 405: _not_routed},
        lifespan=lifespan,
        middleware=[
            Middleware(ErrorShield),
            Middleware(BodyLimit, limits=limits),
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

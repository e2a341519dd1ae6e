"""Limits that keep one HTTP caller from stalling or crashing the front door.

uvicorn with httptools enforces no header size and no header or body read timeout of its own
(`h11_max_incomplete_event_size` applies to h11 only, and its keep-alive timer stops at the
first byte of a request), so a 32 MB header was answered and a slow or short upload held its
connection forever. The header side is guarded in the protocol, where the bytes arrive; the
body side in an ASGI middleware, which answers in OpenAI's error shape before the route runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

LOG = logging.getLogger(__name__)
KIB = 1024
MIB = 1024 * KIB
# A refused connection is half-closed and its further bytes discarded for this long before it
# closes, so the client reads the error instead of a reset (nginx's lingering close).
LINGER_S = 2.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class DoorLimits:
    """What one HTTP connection may cost the router (SLUICE_ROUTER_HTTP_*, README)."""

    # Far above a 128k-token prompt (about 0.5 MB of text), and the most one request may make
    # the router parse and count.
    max_body_bytes: int = 8 * MIB
    # Request line plus headers; browsers and SDKs send a few KiB.
    max_header_bytes: int = 64 * KIB
    # From a request's first byte to the end of its headers (slow-header connections).
    header_timeout_s: float = 10.0
    # From the end of the headers to the end of the body, however slowly it trickles.
    body_timeout_s: float = 60.0
    # An idle keep-alive connection is closed after this.
    keep_alive_s: int = 5
    # Connections plus in-flight requests; beyond it uvicorn answers 503.
    max_connections: int = 1024


# Anthropic's error types for the statuses answered here (anthropic/response.py has the rest).
_ANTHROPIC_KINDS = {408: "timeout_error", 413: "request_too_large", 500: "api_error"}


def error_json(kind: str, code: str, message: str) -> bytes:
    """An OpenAI-shaped error body (the routes' own errors use openai/response.py)."""
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def door_error_json(scope: Scope, status: int, kind: str, code: str, message: str) -> bytes:
    """The error body in the shape of the API the path belongs to: Anthropic's under
    /v1/messages, whose clients read only that shape, OpenAI's elsewhere."""
    if str(scope.get("path", "")).startswith("/v1/messages"):
        anthropic_kind = _ANTHROPIC_KINDS.get(status, "invalid_request_error")
        return orjson.dumps(
            {"type": "error", "error": {"type": anthropic_kind, "message": message}}
        )
    return error_json(kind, code, message)


def raw_response(status: int, body: bytes) -> bytes:
    """A complete HTTP/1.1 response that also closes the connection."""
    return b"".join(
        (
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        )
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a header size limit (431) and a header read timeout
    (408, from a request's first byte; also for a connection that never sends one)."""

    limits: ClassVar[DoorLimits] = DoorLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_bytes = 0
        self._awaiting_headers = True
        self._refused = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._awaiting_headers:
            if self._header_timer is None:
                self._arm_header_timer()
            # Counted before parsing; a chunk that completes the headers resets the count in
            # on_headers_complete, so body bytes in the same chunk never count as header bytes.
            self._header_bytes += len(data)
        super().data_received(data)
        if self._awaiting_headers and self._header_bytes > self.limits.max_header_bytes:
            self._refuse(
                431,
                "request_header_fields_too_large",
                f"the request line and headers exceed {self.limits.max_header_bytes} bytes",
            )

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        self._cancel_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next request's header clock starts at its first byte (data_received).
        self._awaiting_headers = True
        self._header_bytes = 0

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(
            self.limits.header_timeout_s, self._header_timed_out
        )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _responding(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if not self._awaiting_headers or self.transport.is_closing():
            return
        if self._responding():
            # A pipelined request waits (unread) for the answer before it; its clock restarts.
            self._arm_header_timer()
            return
        if self._header_bytes == 0:
            # Connected and never spoke (a pre-opened connection): nobody to answer.
            self.transport.close()
            return
        self._refuse(
            408,
            "request_timeout",
            f"the request headers did not arrive within {self.limits.header_timeout_s:g} s",
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._refused = True
        self._cancel_header_timer()
        if self.transport.is_closing():
            return
        LOG.info("front door refused a connection from %s: %s", self.client, message)
        if self._responding():
            self.transport.close()
            return
        self.transport.write(
            raw_response(status, error_json("invalid_request_error", code, message))
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)


def guarded_protocol(limits: DoorLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=` with these limits (uvicorn builds one per
    connection from the class, so the limits ride on a subclass)."""
    return type("DoorProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


class _BodyRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class _ClientGone(Exception):
    """The client disconnected before its body arrived; nobody is left to answer."""


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            if not value.strip().isdigit():
                raise _BodyRefused(400, "invalid_content_length", "content-length is not a number")
            return int(value)
    return None


class _Deadlines:
    """One timer for every body being read, in place of an asyncio.timeout per request (about
    4 us of CPU each: a timer handle armed and cancelled). All reads have the same timeout, so
    their deadlines are in the order they began: the timer waits for the oldest, cancels every
    read past its deadline, and is armed again for the oldest one left (once a timeout period
    on a busy door). A read's task sees TimeoutError, as under asyncio.timeout."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        # Reads in progress, oldest first: their task and deadline, and whether it has passed.
        self._reads: dict[int, tuple[asyncio.Task[Any], float, list[bool]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_id = 0

    async def run(self, read: Awaitable[bytes]) -> bytes:
        task = asyncio.current_task()
        assert task is not None, "a body is read in a task"
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A new loop (tests): the old one's timer and reads went with it.
            self._loop, self._timer, self._reads = loop, None, {}
        self._next_id += 1
        read_id, expired, cancelling = self._next_id, [False], task.cancelling()
        self._reads[read_id] = (task, loop.time() + self._timeout_s, expired)
        if self._timer is None:
            self._timer = loop.call_at(loop.time() + self._timeout_s, self._expire)
        try:
            return await read
        except asyncio.CancelledError:
            if expired[0] and task.uncancel() <= cancelling:
                raise TimeoutError from None
            raise
        finally:
            self._reads.pop(read_id, None)

    def _expire(self) -> None:
        assert self._loop is not None
        self._timer, now = None, self._loop.time()
        for task, deadline, expired in list(self._reads.values()):
            if deadline > now:
                self._timer = self._loop.call_at(deadline, self._expire)
                return
            if not expired[0]:
                expired[0] = True
                task.cancel()


class BodyLimit:
    """Reads the whole request body before the route runs: over `max_body_bytes` (declared or
    counted while it streams in) is a 413, a body slower than `body_timeout_s` a 408, both in
    OpenAI's error shape and without reading further. The route then gets the buffered body."""

    def __init__(self, app: App, limits: DoorLimits) -> None:
        self._app = app
        self._limits = limits
        self._deadlines = _Deadlines(limits.body_timeout_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        try:
            declared = _declared_length(scope)
            if declared is not None and declared > self._limits.max_body_bytes:
                raise self._too_large()
            body = await self._deadlines.run(self._read(receive))
        except _BodyRefused as refused:
            await _send_error(scope, send, refused.status, refused.code, str(refused))
            return
        except TimeoutError:
            message = f"the request body did not arrive within {self._limits.body_timeout_s:g} s"
            await _send_error(scope, send, 408, "request_timeout", message)
            return
        except _ClientGone:
            return
        await self._app(scope, _replay(body, receive), send)

    def _too_large(self) -> _BodyRefused:
        return _BodyRefused(
            413,
            "request_too_large",
            f"the request body exceeds the limit of {self._limits.max_body_bytes} bytes",
        )

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self._limits.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The buffered body once, then the connection's own events (a disconnect during a
    stream still reaches the route)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def _send_error(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    body = door_error_json(scope, status, "invalid_request_error", code, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        # The rest of an oversized or late body is not read; the connection cannot be reused.
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ErrorShield:
    """The last word on an unexpected exception in a route: logged with its traceback and
    answered as a 500 in OpenAI's error shape, never a plain-text body or a dropped
    connection. (Starlette's own handler answers plain text.)"""

    def __init__(self, app: App) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._app(scope, receive, tracked)
        except Exception:
            LOG.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                # Headers are out; ending the body is all that is left (the client sees a
                # short response rather than a hung one).
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            message = "internal error; the router logged it (retry, or report the time)"
            body = door_error_json(scope, 500, "server_error", "internal", message)
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

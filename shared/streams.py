"""Streams whose consumer may vanish: each runs its producer in a task of its own.

A stream's producer is a chain of async generators (a servicer, the pipeline, the cascade, a
gRPC client stream) whose `with` blocks hold OpenTelemetry context tokens, and a token can only
be detached in the contextvars Context that attached it. When a consumer goes away while the
chain is parked at a `yield` (grpc.aio's server stops iterating a generator whose client
cancelled; Starlette stops iterating when an HTTP client disconnects), nobody closes the chain:
the garbage collector finalises it later, in whatever context is current then, so every detach
fails ("Failed to detach context") and the upstream call runs on until that happens.

`relay` fixes the shape rather than the symptom. The producer runs in its own task, which does
nothing but move items into a queue, so whenever that task waits it waits inside the chain; a
cancel lands there and unwinds every generator in the task's own context. The consumer only
reads the queue, and closing it (or cancelling it) cancels the task and waits until the
upstream is closed. `StreamsInTheirOwnTask` applies the same to every server-streaming gRPC
method, outside the tracing interceptor, so that interceptor's own tokens are safe too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc
from opentelemetry.context import Context, attach, detach

T = TypeVar("T")

_DONE = object()


async def _pump(
    source: AsyncIterator[T], queue: asyncio.Queue[object], context: Context | None
) -> None:
    # The token is attached and detached in this one coroutine, the task's own context.
    token = attach(context) if context is not None else None
    try:
        async for item in source:
            # Unbounded on purpose: an await here would park the chain at its `yield` again.
            # A stream's items are bounded by the answer's max_tokens.
            queue.put_nowait(item)
    finally:
        if token is not None:
            detach(token)


async def relay(
    source: AsyncIterator[T], context: Context | None = None
) -> AsyncGenerator[T, None]:
    """Yields what `source` yields, iterating it in a task of its own (with `context` attached
    there, when given). Whatever ends `source` (an error, an abort) is raised here. Use it under
    `contextlib.aclosing`, so an early exit cancels the task and waits for it to unwind."""
    queue: asyncio.Queue[object] = asyncio.Queue()
    task = asyncio.create_task(_pump(source, queue, context), name="stream producer")
    task.add_done_callback(lambda _: queue.put_nowait(_DONE))
    try:
        while (item := await queue.get()) is not _DONE:
            yield cast(T, item)
        task.result()
    finally:
        if not task.done():
            task.cancel()
            # Waits without raising the task's CancelledError; if this wait is itself cancelled,
            # the task still unwinds on its own.
            await asyncio.wait([task])


async def finish_call(call: grpc.aio.UnaryStreamCall[Any, Any]) -> None:
    """Cancels a client stream left before its end (a no-op for a finished one) and runs the
    tracing wrapper of its messages to the end. That wrapper ends the call's span only when it
    is iterated to an end, so a stream abandoned before its first message (or at a yield)
    would keep its span open, and the server's half of the trace would lose its parent."""
    call.cancel()
    # Reading a cancelled call raises at once; that CancelledError is the call's, not ours.
    with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
        async for _ in call:
            pass


Behavior = Callable[[Any, Any], Any]


class _Unwritten:
    """Counts messages produced but not yet written, so an abort can wait for them: the
    producer runs ahead of the writes, and a status sent first would drop the messages."""

    def __init__(self) -> None:
        self._count = 0
        self.none = asyncio.Event()
        self.none.set()

    async def count(self, messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for message in messages:
            self._count += 1
            self.none.clear()
            yield message

    def written(self) -> None:
        self._count -= 1
        if self._count == 0:
            self.none.set()


class _AbortAfterWrites:
    """The servicer context the behavior sees: `abort` first lets the queued messages out."""

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any], unwritten: _Unwritten):
        self._context = context
        self._unwritten = unwritten

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(self, code: grpc.StatusCode, details: str = "", *args: Any) -> None:
        await self._unwritten.none.wait()
        await self._context.abort(code, details, *args)


def _written(behavior: Behavior) -> Callable[..., Awaitable[None]]:
    """A server-streaming behavior as a coroutine that writes each message (grpc.aio's
    reader/writer form), its generator run by `relay` and always closed in this RPC's task."""

    async def write_each(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        unwritten = _Unwritten()
        produced = unwritten.count(behavior(request, _AbortAfterWrites(context, unwritten)))
        async with contextlib.aclosing(relay(produced)) as messages:
            async for message in messages:
                await context.write(message)
                unwritten.written()

    return write_each


class StreamsInTheirOwnTask(grpc.aio.ServerInterceptor):
    """Runs each server-streaming method's generator through `relay`. Put it first in the
    server's interceptors, so the generators of those after it (the tracing one) run inside."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or not handler.response_streaming:
            return handler
        if handler.request_streaming:
            behavior, field = handler.stream_stream, "stream_stream"
        else:
            behavior, field = handler.unary_stream, "unary_stream"
        if not inspect.isasyncgenfunction(behavior):
            return handler  # already a writer coroutine, or a sync generator on a thread
        # The handler is grpc's RpcMethodHandler namedtuple; only its behavior changes.
        replaced: grpc.RpcMethodHandler[Any, Any] = handler._replace(**{field: _written(behavior)})  # type: ignore[attr-defined]
        return replaced

"""Streams whose consumer leaves early: the producer unwinds in its own context, at once."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.streams import relay
from shared.telemetry import Telemetry

DETACH_FAILED = "Failed to detach context"
METHOD = "/test.Streams/Count"


async def wait_until(condition: asyncio.Event, what: str) -> None:
    try:
        await asyncio.wait_for(condition.wait(), 30)
    except TimeoutError:
        pytest.fail(f"{what} did not happen within 30 s")


def detach_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    # Finalisers of abandoned generators run when the collector finds them; make it look now.
    gc.collect()
    return [r.getMessage() for r in caplog.records if DETACH_FAILED in r.getMessage()]


class Producer:
    """An endless source whose span stays current across its yields, like the pipeline's."""

    def __init__(self, tracer_provider: TracerProvider) -> None:
        self._tracer = tracer_provider.get_tracer("test")
        self.closed = asyncio.Event()

    async def count(self) -> AsyncIterator[int]:
        try:
            with self._tracer.start_as_current_span("producer"):
                n = 0
                while True:
                    n += 1
                    yield n
                    await asyncio.sleep(0)
        finally:
            self.closed.set()


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracer_provider, exporter
    tracer_provider.shutdown()


async def test_closing_a_relay_unwinds_its_producer_in_the_producers_context(
    provider: tuple[TracerProvider, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    tracer_provider, exporter = provider
    producer = Producer(tracer_provider)
    consumer = relay(producer.count())
    assert await anext(consumer) == 1
    # Closed from another task, as a server does when its client goes away.
    await asyncio.create_task(consumer.aclose())
    assert producer.closed.is_set(), "the producer must be closed by the time aclose returns"
    assert [s.name for s in exporter.get_finished_spans()] == ["producer"]
    assert detach_failures(caplog) == []


async def test_a_relay_raises_what_ended_its_source() -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise ValueError("the source broke")

    received = []
    with pytest.raises(ValueError, match="the source broke"):
        async with contextlib.aclosing(relay(failing())) as items:
            async for item in items:
                received.append(item)
    assert received == [1]


def server_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == METHOD]


async def test_a_cancelled_server_stream_closes_its_generator_in_its_own_task(
    provider: tuple[TracerProvider, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    """With grpc.aio alone, a client that cancels while the server is writing leaves the
    servicer's generator (and the tracing interceptor's) parked at a yield until the collector
    finalises it in another context: detaching fails, and the producer runs on until then."""
    caplog.set_level(logging.ERROR, logger="opentelemetry.context")
    tracer_provider, exporter = provider
    telemetry = Telemetry(provider=tracer_provider)
    producer = Producer(tracer_provider)

    async def count(
        request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        async for n in producer.count():
            yield str(n).encode()

    server = grpc.aio.server(interceptors=list(telemetry.server_interceptors()))
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_stream_rpc_method_handler(count)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Streams", {"Count": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            counting: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(METHOD)
            call = counting(b"")
            assert await call.read() == b"1"
            call.cancel()
            await wait_until(producer.closed, "closing the servicer's generator")
    finally:
        await server.stop(None)
    assert detach_failures(caplog) == []
    assert len(server_spans(exporter)) == 1

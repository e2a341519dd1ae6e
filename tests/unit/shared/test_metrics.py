"""shared/metrics.py: RPC latency by method and status code, and the /metrics endpoint's life:
its address from settings, off when empty, up and down with the gRPC server."""

from __future__ import annotations

import asyncio
import importlib
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from shared.grpc_server import AddressInUseError, build_grpc_server, run_until_terminated
from shared.metrics import GrpcServerMetrics, MetricsEndpoint, env_metrics_listen
from shared.settings import SettingsError
from shared.telemetry import Telemetry

SERVICE = "test.Echo"
HISTOGRAM = "sluice_grpc_server_handling_seconds"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def handlers(clock: FakeClock) -> grpc.GenericRpcHandler:
    async def ok(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        clock.now += 0.3  # the call "takes" 300 ms
        return request

    async def missing(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        raise AssertionError("abort raises")

    async def broken(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        raise RuntimeError("a bug")

    async def stream(
        request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        for part in (b"a", b"b"):
            clock.now += 0.02
            yield part

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Ok": grpc.unary_unary_rpc_method_handler(ok),
            "Missing": grpc.unary_unary_rpc_method_handler(missing),
            "Broken": grpc.unary_unary_rpc_method_handler(broken),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )


def sample(registry: CollectorRegistry, suffix: str, method: str, code: str, **extra: str) -> Any:
    labels = {"grpc_service": SERVICE, "grpc_method": method, "grpc_code": code, **extra}
    return registry.get_sample_value(f"{HISTOGRAM}{suffix}", labels)


async def test_each_rpc_is_timed_by_method_and_status_code() -> None:
    registry, clock = CollectorRegistry(), FakeClock()
    server = grpc.aio.server(interceptors=[GrpcServerMetrics(registry, clock)])
    server.add_generic_rpc_handlers((handlers(clock),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:

            def unary(method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
                return channel.unary_unary(f"/{SERVICE}/{method}")

            for _ in range(2):
                assert await unary("Ok")(b"x") == b"x"
            for method, code in (("Missing", grpc.StatusCode.NOT_FOUND), ("Broken", None)):
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await unary(method)(b"x")
                assert failed.value.code() == (code or grpc.StatusCode.UNKNOWN)
            streaming: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
                f"/{SERVICE}/Stream"
            )
            assert [part async for part in streaming(b"")] == [b"a", b"b"]
    finally:
        await server.stop(None)
    assert sample(registry, "_count", "Ok", "OK") == 2
    assert sample(registry, "_sum", "Ok", "OK") == pytest.approx(0.6)
    # 300 ms lands above the 250 ms bucket and within the 500 ms one.
    assert sample(registry, "_bucket", "Ok", "OK", le="0.25") == 0
    assert sample(registry, "_bucket", "Ok", "OK", le="0.5") == 2
    assert sample(registry, "_count", "Missing", "NOT_FOUND") == 1
    assert sample(registry, "_count", "Broken", "UNKNOWN") == 1
    assert sample(registry, "_count", "Stream", "OK") == 1
    assert sample(registry, "_sum", "Stream", "OK") == pytest.approx(0.04)
    assert sample(registry, "_count", "Ok", "NOT_FOUND") is None


async def test_health_checks_are_not_timed() -> None:
    registry = CollectorRegistry()
    hosted = build_grpc_server(
        "127.0.0.1:0",
        [SERVICE],
        lambda _: None,
        Telemetry(TracerProvider()),
        metrics=MetricsEndpoint("", registry),
    )
    await hosted.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{hosted.port}") as channel:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    finally:
        await hosted.server.stop(None)
    assert not [s for m in registry.collect() for s in m.samples]


@pytest.mark.parametrize("service", ["router", "cache", "compressor", "batcher", "dispatcher"])
def test_each_service_reads_its_metrics_address_and_an_empty_one_turns_it_off(
    service: str,
) -> None:
    settings = importlib.import_module(f"services.{service}.config").Settings
    variable = f"SLUICE_{service.upper()}_METRICS_LISTEN"
    # Unset: a free loopback port, printed at start, so replicas on one machine never clash;
    # the manifests and `sluice up` name fixed ports.
    assert settings.from_env({}).metrics_listen == "127.0.0.1:0"
    assert settings.from_env({variable: "0.0.0.0:9999"}).metrics_listen == "0.0.0.0:9999"
    assert settings.from_env({variable: ""}).metrics_listen == ""


def test_a_malformed_metrics_address_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="SLUICE_X_METRICS_LISTEN"):
        env_metrics_listen({"SLUICE_X_METRICS_LISTEN": "nowhere"}, "SLUICE_X_METRICS_LISTEN", "")


def test_the_endpoint_serves_its_registry_until_stopped() -> None:
    endpoint = MetricsEndpoint("127.0.0.1:0")
    GrpcServerMetrics(endpoint.registry).handling.labels(SERVICE, "Ok", "OK").observe(0.1)
    url = endpoint.start()
    try:
        assert url == f"http://127.0.0.1:{endpoint.port}/metrics"
        scraped = httpx.get(url, timeout=5).text
        assert f"{HISTOGRAM}_count" in scraped and 'grpc_method="Ok"' in scraped
        # Only this registry: nothing from prometheus_client's process-wide default one.
        assert "python_gc_objects_collected_total" not in scraped
    finally:
        endpoint.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=5)


def test_an_empty_address_serves_nothing() -> None:
    endpoint = MetricsEndpoint("")
    assert endpoint.start() == "" and endpoint.url == "" and endpoint.port == 0
    endpoint.stop()


async def test_the_endpoint_lives_as_long_as_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_SHUTDOWN_ANNOUNCE_S", "0")
    endpoint = MetricsEndpoint("127.0.0.1:0")
    hosted = build_grpc_server(
        "127.0.0.1:0", [SERVICE], lambda _: None, Telemetry(TracerProvider()), metrics=endpoint
    )
    running = asyncio.create_task(run_until_terminated(hosted, name="test", drain_grace_s=0))
    for _ in range(100):
        if endpoint.url:
            break
        await asyncio.sleep(0.05)
    url = endpoint.url
    response = await asyncio.to_thread(httpx.get, url, timeout=5)
    assert response.status_code == 200
    signal.raise_signal(signal.SIGTERM)
    await asyncio.wait_for(running, 10)
    assert endpoint.url == ""
    with pytest.raises(httpx.ConnectError):
        await asyncio.to_thread(httpx.get, url, timeout=5)


async def test_a_taken_metrics_address_stops_the_build_naming_it() -> None:
    # Async: building a grpc.aio server needs a running event loop, whatever ran before.
    endpoint = MetricsEndpoint("127.0.0.1:0")
    endpoint.start()
    try:
        taken = f"127.0.0.1:{endpoint.port}"
        with pytest.raises(AddressInUseError, match=taken):
            build_grpc_server(
                "127.0.0.1:0",
                [SERVICE],
                lambda _: None,
                Telemetry(TracerProvider()),
                metrics=MetricsEndpoint(taken),
            )
    finally:
        endpoint.stop()

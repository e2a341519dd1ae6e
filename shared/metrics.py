"""Prometheus metrics: one registry per process, its HTTP endpoint, and gRPC latency per RPC.

Every service builds one `MetricsEndpoint` in `serve()`; its registry is passed to whatever
records into it (the gRPC interceptor below, the service's own metrics object), never taken
from prometheus_client's process-wide default registry, so tests can build many servers in one
process and a scrape shows one server's figures only. The endpoint is served on
`SLUICE_<SERVICE>_METRICS_LISTEN` (each service's README gives its default port); an empty
value turns serving off, while the figures are still counted.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Histogram, start_http_server

from shared.settings import env_address

LOG = logging.getLogger(__name__)

# Latencies from a loopback hop (~0.5 ms) to a slow model call with escalations (tens of
# seconds), so one set of buckets serves the cache's Lookup and the router's Complete alike.
LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
# Probes and tooling, not traffic: left out as the tracing interceptor leaves them out.
_UNMEASURED_SERVICES = frozenset(
    {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
)


def env_metrics_listen(env: Mapping[str, str], name: str, default: str) -> str:
    """The metrics endpoint's host:port from `name`, `default` when unset; "" when the variable
    is set but empty, which turns the endpoint off."""
    if name in env and not env[name].strip():
        return ""
    return env_address(env, name, default)


class MetricsEndpoint:
    """A process's registry, served over HTTP at /metrics on `listen` ("" serves nothing)."""

    def __init__(self, listen: str, registry: CollectorRegistry | None = None) -> None:
        self.listen = listen
        self.registry = registry or CollectorRegistry()
        self._server: Any = None
        self.port = 0

    @property
    def url(self) -> str:
        """Where the figures are read, once started; "" when not served."""
        if not self.port:
            return ""
        host = self.listen.rpartition(":")[0].strip("[]")
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> str:
        """Serves the registry from a daemon thread (prometheus_client's WSGI server, which
        answers scrapes without touching the event loop); returns the URL, "" when off."""
        if not self.listen or self._server is not None:
            return self.url
        host, _, port = self.listen.rpartition(":")
        self._server, _ = start_http_server(int(port), host.strip("[]"), self.registry)
        self.port = int(self._server.server_port)
        return self.url

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None
        self.port = 0


def _method_labels(full_method: str) -> tuple[str, str]:
    """("sluice.cache.v1.SemanticCacheService", "Lookup") from "/sluice.cache.v1...../Lookup"."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


def _code_name(context: grpc.aio.ServicerContext[Any, Any], default: grpc.StatusCode) -> str:
    """The status the handler set (by abort or set_code), else `default`."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        # grpc.aio reports a code set on the context as its integer value.
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), default.name)
    return default.name


Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any]


class GrpcServerMetrics(grpc.aio.ServerInterceptor):
    """Times every RPC from the handler's start to its last message, by service, method and
    status code: `sluice_grpc_server_handling_seconds`. Put it first among the interceptors, so
    a server-streaming call is timed over its writes too."""

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float] = time.perf_counter):
        self._clock = clock
        self.handling = Histogram(
            "sluice_grpc_server_handling_seconds",
            "Time from an RPC's start to its status, by service, method and status code.",
            ("grpc_service", "grpc_method", "grpc_code"),
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        service, method = _method_labels(handler_call_details.method)
        if handler is None or service in _UNMEASURED_SERVICES:
            return handler
        timed = {}
        for field in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behavior = getattr(handler, field)
            if behavior is not None:
                timed[field] = self._timed(behavior, service, method)
        # The handler is grpc's RpcMethodHandler namedtuple; only its behavior changes.
        replaced: grpc.RpcMethodHandler[Any, Any] = handler._replace(**timed)  # type: ignore[attr-defined]
        return replaced

    def _observe(
        self, labels: tuple[str, str], context: Any, started: float, error: BaseException | None
    ) -> None:
        if error is None:
            code = _code_name(context, grpc.StatusCode.OK)
        elif isinstance(error, grpc.aio.AbortError):
            code = _code_name(context, grpc.StatusCode.UNKNOWN)
        elif isinstance(error, asyncio.CancelledError):
            code = grpc.StatusCode.CANCELLED.name
        else:
            code = grpc.StatusCode.UNKNOWN.name
        self.handling.labels(*labels, code).observe(self._clock() - started)

    def _timed(self, behavior: Behavior, service: str, method: str) -> Behavior:
        labels = (service, method)
        if inspect.isasyncgenfunction(behavior):

            async def timed_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                started, error = self._clock(), None
                try:
                    async for message in behavior(request, context):
                        yield message
                except BaseException as raised:
                    error = raised
                    raise
                finally:
                    self._observe(labels, context, started, error)

            return timed_stream
        if inspect.iscoroutinefunction(behavior):

            async def timed_call(request: Any, context: Any) -> Any:
                started, error = self._clock(), None
                try:
                    return await behavior(request, context)
                except BaseException as raised:
                    error = raised
                    raise
                finally:
                    self._observe(labels, context, started, error)

            return timed_call
        # A synchronous handler runs on grpc's thread pool; none of ours is one.
        return behavior

"""Builds and runs a Sluice gRPC server: health, reflection, tracing and a SIGTERM drain.

The shape follows grpc's asyncio examples: health and reflection come from grpcio's own
packages, the health status is NOT_SERVING until the service says it is ready, and SIGTERM
flips every service to NOT_SERVING before `server.stop(grace)` lets in-flight calls finish.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from shared.metrics import GrpcServerMetrics, MetricsEndpoint
from shared.settings import env_float
from shared.telemetry import Telemetry

LOG = logging.getLogger(__name__)
# Kubernetes gives the pod terminationGracePeriodSeconds (k8s/: 30 s) after SIGTERM; the
# announce delay (SLUICE_SHUTDOWN_ANNOUNCE_S, 2 s) plus this drain must finish well inside it so
# that in-flight calls end cleanly instead of being SIGKILLed.
DEFAULT_DRAIN_GRACE_S = 20.0
# Large enough for a long-context request (DESIGN: up to 32k-token documents) with headroom.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Clients keep one HTTP/2 connection per replica for as long as it lives, so replicas added by a
# scale-out would get no calls from existing clients. Closing each connection (GOAWAY) after a
# few minutes (gRPC adds +-10% jitter) makes clients re-resolve and spread over the new pods;
# calls in flight get the grace to finish, the same as a SIGTERM drain.
MAX_CONNECTION_AGE_MS = 5 * 60 * 1000
MAX_CONNECTION_AGE_GRACE_MS = int(DEFAULT_DRAIN_GRACE_S * 1000)
SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
    ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
    ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_MS),
)


def caller_deadline(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
    """The caller's gRPC deadline as a time.monotonic() instant; None when it set none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


@dataclass
class HostedServer:
    """A started-or-not gRPC server with its health servicer and bound port."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    service_names: Sequence[str]
    port: int
    # The process's Prometheus registry and endpoint, served while the server runs.
    metrics: MetricsEndpoint | None = None

    async def set_serving(self) -> None:
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def set_not_serving(self) -> None:
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)


def build_grpc_server(
    address: str,
    service_names: Sequence[str],
    register: Callable[[grpc.aio.Server], None],
    telemetry: Telemetry,
    *,
    max_receive_bytes: int = MAX_MESSAGE_BYTES,
    metrics: MetricsEndpoint | None = None,
) -> HostedServer:
    """Creates the server, registers the servicers, health and reflection, and binds address.
    A message over max_receive_bytes ends its call RESOURCE_EXHAUSTED before it is parsed.
    With `metrics`, every RPC's latency is recorded in its registry, which is served at its
    address while the server runs (run_until_terminated)."""
    options = [
        *(option for option in SERVER_OPTIONS if option[0] != "grpc.max_receive_message_length"),
        ("grpc.max_receive_message_length", max_receive_bytes),
    ]
    interceptors = list(telemetry.server_interceptors())
    if metrics is not None:
        # First, outside the stream relay, so that a stream is timed until its last write.
        interceptors.insert(0, GrpcServerMetrics(metrics.registry))
    server = grpc.aio.server(interceptors=interceptors, options=options)
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            *service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    ensure_address_free(address)
    if metrics is not None and metrics.listen:
        ensure_address_free(metrics.listen)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        # grpcio raises a bare RuntimeError ("Failed to bind") when the port is taken.
        raise AddressInUseError(address) from None
    if port == 0:
        raise AddressInUseError(address)
    return HostedServer(server, health_servicer, service_names, port, metrics)


class AddressInUseError(OSError):
    """The listen address is taken; the message names it and says what to do."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"cannot listen on {address}: the address is already in use (another process, "
            "perhaps an earlier Sluice service, holds it); stop it or set another *_LISTEN address"
        )


def ensure_address_free(address: str) -> None:
    """Raises AddressInUseError when something listens on host:port already. Checked before
    grpcio binds, so the failure is one clear line instead of gRPC core's error log."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    if not port.isdigit() or int(port) == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise AddressInUseError(address) from None
            # Anything else (a host name, an address not on this machine) is grpcio's to judge.


async def run_until_terminated(
    hosted: HostedServer,
    *,
    name: str,
    start: Callable[[], Awaitable[None]] | None = None,
    stop: Callable[[], Awaitable[None]] | None = None,
    telemetry: Telemetry | None = None,
    drain_grace_s: float = DEFAULT_DRAIN_GRACE_S,
) -> None:
    """Serves until SIGTERM or SIGINT, then drains and shuts down.

    `start` runs after the port is open and before health turns SERVING (model loading, index
    rebuilds); health answers NOT_SERVING meanwhile, so probes see a live but unready process.
    """
    await hosted.set_not_serving()
    await hosted.server.start()
    host_port = hosted.port
    LOG.info("%s listening on port %d", name, host_port)
    print(f"{name} listening on 127.0.0.1:{host_port}", flush=True)
    if hosted.metrics is not None and hosted.metrics.start():
        print(f"{name} metrics on {hosted.metrics.url}", flush=True)
    if start is not None:
        await start()
    # Everything built so far (modules, models, policies) lives as long as the process. Moving
    # it out of the collector's view keeps full collections, and their pauses in the middle of
    # requests, down to what requests allocate (gc.freeze, Python 3.7+).
    gc.collect()
    gc.freeze()
    await hosted.set_serving()
    LOG.info("%s is SERVING", name)
    terminated = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, terminated.set)
    await terminated.wait()
    # NOT_SERVING first, while still accepting calls, so that probes and client-side balancers
    # move traffic away before the server refuses new RPCs; then drain what is in flight.
    await hosted.health.enter_graceful_shutdown()
    announce_s = env_float(os.environ, "SLUICE_SHUTDOWN_ANNOUNCE_S", 2.0, minimum=0.0)
    LOG.info("%s NOT_SERVING; draining in %.1fs for up to %.1fs", name, announce_s, drain_grace_s)
    await asyncio.sleep(announce_s)
    await hosted.server.stop(drain_grace_s)
    if stop is not None:
        await stop()
    if hosted.metrics is not None:
        hosted.metrics.stop()
    if telemetry is not None:
        telemetry.shutdown()
    LOG.info("%s stopped", name)

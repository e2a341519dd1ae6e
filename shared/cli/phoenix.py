"""`sluice up --trace-ui`: Arize Phoenix as the trace UI of a local mesh.

Phoenix with its dependencies is some 860 MB, so it is not a dependency of Sluice: the first
`--trace-ui` installs `arize-phoenix` into a venv of its own (`.sluice/phoenix-venv`, or where
SLUICE_PHOENIX_VENV says), showing pip's progress, and later runs reuse it. It listens on
loopback only: its UI and REST API on one port (6006 by default), its OTLP/gRPC collector on
another (4317).

The services keep exporting to `sluice up`'s own OTLP receiver, which hands each export on to
Phoenix unchanged: every service keeps one exporter, `sluice trace` keeps its journal, and
Phoenix gets whole spans (resource, events and status included).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from shared.mesh import rotate_log, taken_ports

PACKAGE = "arize-phoenix"
DEFAULT_UI_PORT = 6006
DEFAULT_OTLP_PORT = 4317
# Where the mesh's spans land in Phoenix (the `openinference.project.name` resource attribute).
PROJECT = "sluice"
_READY_TIMEOUT_S = 180.0
_FORWARD_TIMEOUT_S = 5.0

# Phoenix binds its gRPC collector to every interface ("[::]:<port>") whatever PHOENIX_HOST
# says; this launcher binds it to loopback instead, and refuses to start if Phoenix ever asks
# for an address it does not recognise, rather than listen where it should not. On Linux it
# also asks the kernel for SIGTERM when `sluice up` dies (PR_SET_PDEATHSIG), even by SIGKILL,
# so no Phoenix lives on holding its ports.
_LOOPBACK_LAUNCHER = """
import ctypes, os, signal, sys
if sys.platform == "linux":
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    if os.getppid() != int(os.environ["SLUICE_PHOENIX_PARENT"]):
        raise SystemExit("sluice: sluice up exited while Phoenix was starting")
import grpc.aio
_server = grpc.aio.server
def _loopback_server(*args, **kwargs):
    server = _server(*args, **kwargs)
    add_port = server.add_insecure_port
    def add_loopback_port(address):
        if not address.startswith("[::]:"):
            raise SystemExit(f"sluice: Phoenix asked to listen on {address}; refusing")
        return add_port("127.0.0.1:" + address.removeprefix("[::]:"))
    server.add_insecure_port = add_loopback_port
    return server
grpc.aio.server = _loopback_server
from phoenix.server.main import main
sys.argv = ["phoenix", "serve"]
main()
"""


class PhoenixError(RuntimeError):
    """Phoenix cannot be installed or started; the message names the problem and the fix."""


@dataclass(frozen=True)
class PhoenixVenv:
    """The venv Phoenix lives in. It counts as installed only once pip has finished in it,
    so an interrupted install is completed next time rather than trusted."""

    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def _installed_marker(self) -> Path:
        return self.path / ".sluice-installed"

    def installed(self) -> bool:
        return self._installed_marker.exists() and self.python.exists()

    def ensure(
        self, say: Callable[[str], None], run: Callable[..., object] = subprocess.run
    ) -> None:
        """Installs Phoenix unless an earlier run did; pip writes its progress to the terminal."""
        if self.installed():
            return
        say(f"installing Arize Phoenix into {self.path} (once; about 860 MB) ...")
        if not self.python.exists():
            _run_step(run, [sys.executable, "-m", "venv", str(self.path)], self.path)
        _run_step(run, [str(self.python), "-m", "pip", "install", PACKAGE], self.path)
        self._installed_marker.write_text(f"{PACKAGE}\n")


def _run_step(run: Callable[..., object], command: list[str], venv: Path) -> None:
    try:
        run(command, check=True)
    except KeyboardInterrupt as interrupt:
        raise PhoenixError(
            "--trace-ui: the Phoenix install was interrupted; the next `sluice up --trace-ui` "
            "completes it"
        ) from interrupt
    except subprocess.CalledProcessError as error:
        raise PhoenixError(
            f"--trace-ui could not install Phoenix into {venv}: `{' '.join(command)}` exited "
            f"{error.returncode} (its output is above); fix that and run `sluice up --trace-ui` "
            "again"
        ) from error


@dataclass(frozen=True)
class PhoenixPorts:
    ui: int
    otlp: int

    @classmethod
    def pick(cls, free: bool) -> PhoenixPorts:
        """Phoenix's own defaults, or two distinct free ports with --free-ports."""
        if not free:
            return cls(DEFAULT_UI_PORT, DEFAULT_OTLP_PORT)
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            second.bind(("127.0.0.1", 0))
            return cls(first.getsockname()[1], second.getsockname()[1])

    def conflicts(self) -> str:
        """A message naming each taken port; "" when both are free."""
        owners = {"ui": "Phoenix's UI", "otlp": "Phoenix's OTLP collector"}
        taken = taken_ports({"ui": self.ui, "otlp": self.otlp})
        return "\n".join(
            f"--trace-ui: {owners[name]} cannot listen on 127.0.0.1:{port}: the address is "
            "already in use (an earlier Phoenix?); `sluice up --trace-ui --free-ports` picks "
            "free ports"
            for name, port in taken.items()
        )


class PhoenixServer:
    """One Phoenix process on loopback, its data and log under the state directory."""

    def __init__(self, venv: PhoenixVenv, ports: PhoenixPorts, state: Path) -> None:
        self.ports = ports
        self._venv = venv
        self._data = state / "phoenix"
        self.log = state / "logs" / "phoenix.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._forwarders: list[PhoenixForwarder] = []

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.ui}"

    @property
    def otlp_address(self) -> str:
        return f"127.0.0.1:{self.ports.otlp}"

    def forwarder(self, say: Callable[[str], None]) -> PhoenixForwarder:
        """Something the local receiver hands each export to; closed when Phoenix stops."""
        forwarder = PhoenixForwarder(self.otlp_address, say)
        self._forwarders.append(forwarder)
        return forwarder

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        return {
            **base,
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(self.ports.ui),
            "PHOENIX_GRPC_PORT": str(self.ports.otlp),
            "PHOENIX_WORKING_DIR": str(self._data),
            # A local tool: no analytics pixels, no web fonts or downloads from the internet.
            "PHOENIX_TELEMETRY_ENABLED": "false",
            "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
            "SLUICE_PHOENIX_PARENT": str(os.getpid()),
        }

    def start(self, base_env: Mapping[str, str]) -> PhoenixServer:
        self._data.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        rotate_log(self.log)
        with self.log.open("wb") as sink:
            self._process = subprocess.Popen(
                [str(self._venv.python), "-c", _LOOPBACK_LAUNCHER],
                env=self.env(base_env),
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches `sluice up`, which stops Phoenix itself
            )
        return self

    def ready(self) -> bool:
        """True once Phoenix answers its health check; raises if it has exited."""
        if self._process is not None and self._process.poll() is not None:
            raise PhoenixError(
                f"Phoenix exited with {self._process.returncode} while starting; see {self.log}"
            )
        try:
            with urllib.request.urlopen(f"{self.ui_url}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, stop: threading.Event, timeout_s: float = _READY_TIMEOUT_S) -> bool:
        """Waits until Phoenix is up; False when the user stopped the wait."""
        deadline = time.monotonic() + timeout_s
        while not stop.is_set() and not self.ready():
            if time.monotonic() > deadline:
                raise PhoenixError(f"Phoenix was not ready after {timeout_s:.0f}s; see {self.log}")
            stop.wait(0.5)
        return not stop.is_set()

    def stop(self) -> None:
        for forwarder in self._forwarders:
            forwarder.close()
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


class PhoenixForwarder:
    """Hands each export the local receiver took on to Phoenix. A failure is said once (and
    the recovery once), not per batch; the local journal has the spans either way."""

    def __init__(self, address: str, say: Callable[[str], None]) -> None:
        self._channel = grpc.insecure_channel(address)
        self._stub = trace_service_pb2_grpc.TraceServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._say = say
        self._lock = threading.Lock()
        self._failing = False

    def __call__(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        try:
            self._stub.Export(request, timeout=_FORWARD_TIMEOUT_S)
        except grpc.RpcError as error:
            self._note(True, f"traces: Phoenix did not take spans ({error.code().name}); ")
            return
        self._note(False, "traces: Phoenix takes spans again")

    def _note(self, failing: bool, message: str) -> None:
        with self._lock:
            changed, self._failing = failing != self._failing, failing
        if changed:
            self._say(message + ("`sluice trace` still has them" if failing else ""))

    def close(self) -> None:
        self._channel.close()


def start_trace_ui(
    state: Path, *, free: bool, env: Mapping[str, str], say: Callable[[str], None]
) -> PhoenixServer:
    """Installs Phoenix when no earlier run did and starts it; raises PhoenixError naming the
    problem before anything is started."""
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        raise PhoenixError(
            "--trace-ui sends the mesh's traces to Phoenix, but OTEL_EXPORTER_OTLP_ENDPOINT "
            f"already sends them to {env['OTEL_EXPORTER_OTLP_ENDPOINT']}; unset it or drop "
            "--trace-ui"
        )
    ports = PhoenixPorts.pick(free)
    conflicts = ports.conflicts()
    if conflicts:
        raise PhoenixError(conflicts)
    venv = PhoenixVenv(Path(env.get("SLUICE_PHOENIX_VENV") or state / "phoenix-venv"))
    venv.ensure(say)
    return PhoenixServer(venv, ports, state).start(env)


def project_resource(env: Mapping[str, str]) -> str:
    """OTEL_RESOURCE_ATTRIBUTES that file the mesh's spans under Phoenix's `sluice` project,
    keeping any the user set."""
    own = f"openinference.project.name={PROJECT}"
    existing = env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    return f"{existing},{own}" if existing else own

"""podman from the tests: the commands, the scripts run inside containers, the dev overlay.

The probes run inside the containers with the image's own Python (`podman exec`), so nothing
is published on the host and no request leaves the podman network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("router", "cache", "compressor", "batcher", "dispatcher", "simulator")
TAG = os.environ.get("IMAGE_TAG", "dev")
# The model load of the cache and the compressor, on a busy shared core.
READY_TIMEOUT_S = 300.0

# Prints a gRPC server's overall health status, e.g. SERVING; exits 1 if it cannot be asked.
HEALTH = """
import sys, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
try:
    with grpc.insecure_channel(sys.argv[1]) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=3)
except grpc.RpcError as error:
    print(error.code().name)
    sys.exit(1)
print(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
"""

# Sends one HTTP request (argv: method, url, JSON body or '', bearer key or '') and prints
# {"status": ..., "body": ...}; a refused connection prints status 0.
HTTP = """
import json, sys, urllib.error, urllib.request
method, url, body, key = sys.argv[1:5]
headers = {"content-type": "application/json"}
if key:
    headers["authorization"] = "Bearer " + key
request = urllib.request.Request(url, body.encode() or None, headers, method=method)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(request, timeout=120) as reply:
        status, text = reply.status, reply.read().decode()
except urllib.error.HTTPError as error:
    status, text = error.code, error.read().decode()
except OSError as error:
    status, text = 0, repr(error)
try:
    payload = json.loads(text)
except ValueError:
    payload = text
print(json.dumps({"status": status, "body": payload}))
"""


@dataclass
class Podman:
    """Runs podman with the project's containers.conf and remembers what it must remove."""

    run_id: str = field(default_factory=lambda: f"sluice-test-{uuid.uuid4().hex[:8]}")
    env: dict[str, str] = field(default_factory=dict)
    pods: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    # kube play turns each ConfigMap into a named volume and leaves it behind.
    volumes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": os.environ.get(
                "CONTAINERS_CONF", str(ROOT / "deploy" / "containers.conf")
            ),
        }

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args[:3])} ... exited {result.returncode}: "
                f"{result.stderr.strip()[-2000:]}"
            )
        return result

    def image(self, target: str) -> str:
        return f"localhost/sluice/{target}:{TAG}"

    def network(self) -> str:
        """A fresh network with DNS and no route out: only the containers on it talk."""
        name = f"{self.run_id}-net"
        self("network", "create", "--internal", name)
        self.networks.append(name)
        return name

    def exec_python(self, container: str, script: str, *args: str, timeout: float = 150) -> str:
        return self("exec", container, "python", "-c", script, *args, timeout=timeout).stdout

    def health(self, container: str, address: str) -> str:
        result = self("exec", container, "python", "-c", HEALTH, address, check=False)
        return result.stdout.strip() or result.stderr.strip()[-200:]

    def http(
        self, container: str, method: str, url: str, body: Any = None, key: str = ""
    ) -> dict[str, Any]:
        raw = "" if body is None else json.dumps(body)
        out = self.exec_python(container, HTTP, method, url, raw, key)
        reply: dict[str, Any] = json.loads(out)
        return reply

    def state(self, container: str) -> str:
        return self("inspect", "--format", "{{.State.Status}}", container).stdout.strip()

    def logs(self, container: str) -> str:
        result = self("logs", "--tail", "40", container, check=False)
        return (result.stdout + result.stderr)[-4000:]

    def cleanup(self) -> None:
        """Removes every pod, container, volume and network this run made; errors do not stop
        it."""
        for pod in reversed(self.pods):
            self("pod", "rm", "--force", "--time", "0", pod, check=False, timeout=120)
        for container in reversed(self.containers):
            self("rm", "--force", "--time", "0", container, check=False, timeout=120)
        for volume in reversed(self.volumes):
            self("volume", "rm", "--force", volume, check=False)
        for network in reversed(self.networks):
            self("network", "rm", "--force", network, check=False)


def wait_for(
    what: str, probe: Callable[[], str], want: str, timeout: float = READY_TIMEOUT_S
) -> None:
    """Polls probe() until it returns want; fails with the last answer after timeout."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        last = probe()
        if last == want:
            return
        time.sleep(2)
    raise AssertionError(f"{what}: still {last!r} after {timeout:.0f}s, want {want!r}")


def render_dev_overlay() -> list[dict[str, Any]]:
    """The dev overlay as `kubectl kustomize` renders it (kubectl comes with the dev extra)."""
    kubectl = Path(sys.executable).with_name("kubectl")
    out = subprocess.run(
        [str(kubectl), "kustomize", str(ROOT / "k8s" / "overlays" / "dev")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def target_of(deployment: dict[str, Any]) -> str | None:
    """Which of our images a Deployment runs (None for Jaeger, Prometheus)."""
    image = str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])
    name = image.removeprefix("sluice/")
    return name if name != image and name in IMAGES else None


def grpc_port(deployment: dict[str, Any]) -> int | None:
    ports = deployment["spec"]["template"]["spec"]["containers"][0].get("ports", [])
    return next((int(p["containerPort"]) for p in ports if p.get("name") == "grpc"), None)

"""Client-side round_robin spreads calls over every replica of a hop (issue 7, item 3).

In Kubernetes the inner hops sit behind headless Services: a name resolves to every ready pod,
and shared.grpc_client.open_channel balances per call over those addresses with round_robin,
where a ClusterIP Service would pin each HTTP/2 connection, and so every call on it, to one
pod. Here two dispatcher processes stand in for two pods, and an `ipv4:` target listing both
stands in for the DNS answer (no resolver on loopback gives one name two ports). Each replica
has an endpoints file whose one endpoint is named after it, so every response says which
replica served it. One simulator answers for both, with no latency.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from opentelemetry.sdk.trace import TracerProvider
from sluice.common.v1 import common_pb2
from sluice.dispatcher.v1 import dispatcher_service_pb2 as dispatcher_pb
from sluice.dispatcher.v1 import dispatcher_service_pb2_grpc as dispatcher_grpc

from shared.grpc_client import open_channel
from shared.mesh import free_port, grpc_serving
from shared.telemetry import Telemetry

pytestmark = pytest.mark.integration

CALLS = 20
REPLICAS = ("replica-a", "replica-b")


@dataclass
class Process:
    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_until(self, ready: Callable[[], bool], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready after {timeout_s}s")
            time.sleep(0.1)

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def start(name: str, module: str, port: int, env: dict[str, str], log_dir: Path) -> Process:
    log = log_dir / f"{name}.log"
    # The developer's own SLUICE_*/OTEL_* settings must not leak into the replicas.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "OTEL_"))}
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", module],
            env={**clean, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Process(name, port, popen, log)


def simulator_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).is_success
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {"SLUICE_SIMULATOR_LISTEN": f"127.0.0.1:{port}", "SLUICE_SIMULATOR_LATENCY_SCALE": "0"}
    process = start("simulator", "services.simulator", port, env, tmp_path_factory.mktemp("sim"))
    url = f"http://{process.address}"
    try:
        process.wait_until(partial(simulator_up, url))
        yield url
    finally:
        process.stop()


@pytest.fixture
def replicas(simulator: str, tmp_path: Path) -> Iterator[list[Process]]:
    started: list[Process] = []
    try:
        for name in REPLICAS:
            endpoint = {
                "name": name,
                "provider": "simulator",
                "region": "us-east",
                "base_url": f"{simulator}/us-east/v1",
                "models": ["gpt-4o"],
            }
            endpoints = tmp_path / f"{name}.yaml"
            endpoints.write_text(yaml.safe_dump({"endpoints": [endpoint]}))
            port = free_port()
            env = {
                "SLUICE_DISPATCHER_LISTEN": f"127.0.0.1:{port}",
                "SLUICE_DISPATCHER_ENDPOINTS": str(endpoints),
                # Teardown sends SIGTERM; nothing here needs the 2 s announce.
                "SLUICE_SHUTDOWN_ANNOUNCE_S": "0.1",
            }
            started.append(start(name, "services.dispatcher", port, env, tmp_path))
        for process in started:
            process.wait_until(partial(grpc_serving, process.address))
        yield started
    finally:
        for process in started:
            process.stop()


def balanced_target(replicas: list[Process]) -> str:
    return "ipv4:" + ",".join(r.address for r in replicas)


def request(index: int) -> dispatcher_pb.DispatchRequest:
    return dispatcher_pb.DispatchRequest(
        context=common_pb2.RequestContext(tenant_id="balancing", request_id=f"balancing-{index}"),
        call=common_pb2.ModelCall(
            model="gpt-4o",
            messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=uuid.uuid4().hex)],
        ),
    )


async def served_by(channel: grpc.aio.Channel, calls: int) -> Counter[str]:
    """Sends calls one after another and counts which replica answered each."""
    stub = dispatcher_grpc.RegionalDispatcherServiceStub(channel)
    served: Counter[str] = Counter()
    for index in range(calls):
        reply = await stub.Dispatch(request(index), timeout=10)
        served[reply.completion.endpoint] += 1
    return served


def mesh_channel(replicas: list[Process]) -> grpc.aio.Channel:
    """The channel a service opens to a peer, with its round_robin service config."""
    return open_channel(balanced_target(replicas), Telemetry(TracerProvider()))


async def test_round_robin_spreads_calls_over_both_replicas(replicas: list[Process]) -> None:
    channel = mesh_channel(replicas)
    try:
        await asyncio.wait_for(channel.channel_ready(), 10)
        served = await served_by(channel, CALLS)
    finally:
        await channel.close()
    assert sum(served.values()) == CALLS
    assert set(served) == set(REPLICAS)
    # round_robin rotates over the connected replicas; the first call or two may go out
    # before the second connection is up, so the split need not be exactly even.
    assert min(served.values()) >= CALLS // 4, served


async def test_without_round_robin_one_replica_takes_every_call(replicas: list[Process]) -> None:
    """The control: gRPC's default pick_first keeps to one connection, as a ClusterIP would.
    It shows that the spread above comes from the service config, and that the count can
    tell the two apart."""
    async with grpc.aio.insecure_channel(balanced_target(replicas)) as channel:
        served = await served_by(channel, CALLS)
    assert len(served) == 1 and sum(served.values()) == CALLS, served

"""Helpers for tests that run the real mesh: start it, call it, read the simulator's counters."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import redis
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as router_pb
from sluice.router.v1 import router_service_pb2_grpc as router_grpc

from shared.mesh import Mesh, free_port, free_ports
from shared.otlp_receiver import OtlpReceiver

DEV_KEY = (("x-api-key", "dev"),)
# About 1,900 bytes (some 400 tokens): past the default policy's byte check, so a prompt with
# it reaches the compressor (which then finds it under its 1,500-token threshold).
CONTEXT = " ".join(
    f"Paragraph {n}: a write-ahead log records every change before it is applied, so that "
    "after a crash the store replays the log and loses nothing it acknowledged."
    for n in range(12)
)


def with_context(question: str) -> str:
    """The question after a context long enough to be sent to the compressor."""
    return f"{CONTEXT}\n\nQuestion: {question}"


@contextmanager
def running_mesh(
    log_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[Mesh, OtlpReceiver]]:
    # One mesh serves the whole integration session, well past the 1,000 traces `sluice up`
    # keeps: a test that waits for its trace must not see it evicted by earlier tests' spans.
    receiver = OtlpReceiver(max_traces=100_000).start()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        # Tests stop many processes; a short announce keeps teardown quick.
        "SLUICE_SHUTDOWN_ANNOUNCE_S": "0.3",
        # Each mesh keeps its cache database beside its logs, never in the working tree.
        "SLUICE_CACHE_DATA_DIR": str(log_dir / "cache"),
        "SLUICE_BATCHER_DATA_DIR": str(log_dir / "batcher"),
        # Batch API jobs finish in the simulator within a second; poll it as often.
        "SLUICE_BATCHER_POLL_INTERVAL_S": "0.2",
        **(extra_env or {}),
    }
    mesh = Mesh.plan(free_ports(), log_dir, env)
    try:
        mesh.start_all()
        mesh.wait_ready(timeout_s=240)
        yield mesh, receiver
        unclean = {name: code for name, code in mesh.stop_all().items() if code != 0}
        if unclean:
            raise AssertionError(f"services did not exit 0 on SIGTERM: {unclean}")
    finally:
        mesh.stop_all()
        receiver.stop()


@contextmanager
def running_redis(log_dir: Path, port: int = 0) -> Iterator[str]:
    """A throwaway redis-server on loopback (a free port unless given), with persistence off;
    yields its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.skip("redis-server is not installed")
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "redis.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail(f"redis-server did not start:\n{log.read_text()}")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=10)


def ask(
    text: str,
    *,
    system: str = "",
    cache_mode: router_pb.CacheMode.ValueType = router_pb.CACHE_MODE_UNSPECIFIED,
    model_class: str = "",
) -> router_pb.CompleteRequest:
    messages = (
        [common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=system)] if system else []
    )
    messages.append(common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text))
    return router_pb.CompleteRequest(
        messages=messages, cache_mode=cache_mode, model_class=model_class
    )


def router_stub(channel: grpc.aio.Channel) -> router_grpc.RouterServiceAsyncStub:
    return router_grpc.RouterServiceStub(channel)


def simulator_stats(mesh: Mesh) -> dict[str, Any]:
    return dict(httpx.get(f"http://{mesh.address('simulator')}/admin/stats", timeout=5).json())


def patch_region(mesh: Mesh, region: str, **fields: Any) -> None:
    response = httpx.post(
        f"http://{mesh.address('simulator')}/admin/regions/{region}", json=fields, timeout=5
    )
    response.raise_for_status()


def reset_simulator(mesh: Mesh) -> None:
    httpx.post(f"http://{mesh.address('simulator')}/admin/reset", timeout=5).raise_for_status()


def stage_lines(response: router_pb.CompleteResponse) -> dict[str, common_pb2.StageCost]:
    names = {
        common_pb2.STAGE_CACHE: "cache",
        common_pb2.STAGE_COMPRESSOR: "compressor",
        common_pb2.STAGE_BATCHER: "batcher",
        common_pb2.STAGE_TIER: "tier",
        common_pb2.STAGE_JUDGE: "judge",
    }
    lines = {}
    for line in response.cost.stages:
        name = names[line.stage] + (f" {line.tier}" if line.tier else "")
        lines[name] = line
    return lines

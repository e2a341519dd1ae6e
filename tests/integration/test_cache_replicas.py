"""Two cache replicas sharing one Redis: a Store on one is a hit on the other within a second,
and an Invalidate on one removes the entry on the other. Starts its own redis-server."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc

from tests.integration.test_cache_durability import CONTEXT, lookup, store
from tests.integration.test_cache_service import free_port, start, wait_serving
from tests.support import running_redis

pytestmark = pytest.mark.integration

PROPAGATION_S = 1.0
STOP_TIMEOUT_S = 180


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with running_redis(tmp_path) as url:
        yield url


@pytest.fixture
def replicas(tmp_path: Path, redis_url: str) -> Iterator[list[pb_grpc.SemanticCacheServiceStub]]:
    ports = [free_port(), free_port()]
    processes = [
        start(tmp_path / f"replica-{n}.log", port, SLUICE_CACHE_STORE=redis_url)
        for n, port in enumerate(ports)
    ]
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for port in ports]
    try:
        for n, (channel, process) in enumerate(zip(channels, processes, strict=True)):
            wait_serving(channel, process, tmp_path / f"replica-{n}.log")
        yield [pb_grpc.SemanticCacheServiceStub(channel) for channel in channels]
        for process in processes:
            process.send_signal(signal.SIGTERM)
        assert [
            exit_code(process, tmp_path / f"replica-{n}.log") for n, process in enumerate(processes)
        ] == [0, 0]
    finally:
        for channel in channels:
            channel.close()
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def exit_code(process: subprocess.Popen[bytes], log: Path) -> int:
    """The replica's exit code once it has drained and stopped. The bound is generous: on a
    machine loaded ten times over, a replica's shutdown (a 2 s announcement, the drain, closing
    the store, interpreter exit) took over a minute once; a hang still fails, with its log."""
    try:
        return process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"replica still running {STOP_TIMEOUT_S}s after SIGTERM:\n{log.read_text()[-4000:]}"
        )


def within(seconds: float, check: Callable[[], bool]) -> float:
    """Polls check until it holds; returns how long that took, failing after `seconds`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, f"not within {seconds}s"
        time.sleep(0.02)
    return time.monotonic() - started


def test_writes_on_one_replica_are_hits_on_the_other(replicas):
    a, b = replicas
    paris = store(a, "What is the capital of France?", "Paris.")

    def b_hits() -> bool:
        return lookup(b, "What is the capital of France?").entry_id == paris

    within(PROPAGATION_S, b_hits)
    semantic = lookup(b, "What's the capital city of France?")
    assert (semantic.kind, semantic.entry_id, semantic.content) == (
        pb.HIT_KIND_SEMANTIC,
        paris,
        "Paris.",
    )
    # And the other way round.
    berlin = store(b, "What is the capital of Germany?", "Berlin.")
    within(PROPAGATION_S, lambda: lookup(a, "What is the capital of Germany?").entry_id == berlin)
    assert b.Stats(pb.StatsRequest(context=CONTEXT), timeout=10).entries == 2


def test_invalidate_on_one_replica_removes_the_entry_on_the_other(replicas):
    a, b = replicas
    paris = store(a, "What is the capital of France?", "Paris.")
    within(PROPAGATION_S, lambda: lookup(b, "What is the capital of France?").entry_id == paris)
    removed = b.Invalidate(pb.InvalidateRequest(context=CONTEXT, tag="durability"), timeout=10)
    assert removed.removed == 1
    within(
        PROPAGATION_S,
        lambda: lookup(a, "What is the capital of France?").kind == pb.HIT_KIND_MISS,
    )
    assert a.Stats(pb.StatsRequest(context=CONTEXT), timeout=10).entries == 0


def test_a_replica_started_later_loads_the_shared_entries(tmp_path, replicas, redis_url):
    a, _ = replicas
    paris = store(a, "What is the capital of France?", "Paris.")
    port = free_port()
    late = start(tmp_path / "late.log", port, SLUICE_CACHE_STORE=redis_url)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_serving(channel, late, tmp_path / "late.log")
            stub = pb_grpc.SemanticCacheServiceStub(channel)
            assert lookup(stub, "What's the capital city of France?").entry_id == paris
    finally:
        late.kill()
        late.wait(timeout=10)

"""`sluice up` supervises: a service killed with SIGKILL comes back while the mesh keeps
answering, and Ctrl-C still stops everything."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2_grpc as router_grpc

from shared.mesh import grpc_serving
from tests.support import DEV_KEY, ask, stage_lines

pytestmark = pytest.mark.integration
SLUICE = [sys.executable, "-m", "shared.cli.main"]


@dataclass
class RunningUp:
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for_line(self, matches: Callable[[str], bool], timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                found = next((line for line in self.lines if matches(line)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise AssertionError("no such line; sluice up printed:\n" + self.output())
                self.changed.wait(min(left, 1.0))

    def output(self) -> str:
        return "\n".join(self.lines)

    def address(self, name: str) -> str:
        found = re.search(rf"^\s+{name}\s+\w+://(127\.0\.0\.1:\d+)", self.output(), re.MULTILINE)
        assert found, self.output()
        return found[1]


@contextmanager
def sluice_up(home: Path) -> Iterator[RunningUp]:
    env = {**os.environ, "SLUICE_HOME": str(home), "SLUICE_SHUTDOWN_ANNOUNCE_S": "0.2"}
    process = subprocess.Popen(
        [*SLUICE, "up", "--free-ports"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    running = RunningUp(process)
    reader = threading.Thread(target=running.read, daemon=True)
    reader.start()
    try:
        running.wait_for_line(lambda line: line.startswith("Stop with Ctrl-C"), timeout_s=300)
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(10)
        if process.stdout is not None:
            process.stdout.close()


def service_pid(parent: int, name: str) -> int:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    for pid in children:
        if f"services.{name}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
            return int(pid)
    raise AssertionError(f"no {name} process under sluice up")


@dataclass
class Traffic:
    """Asks the router one question after another, counting answers and failures."""

    router: str
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with grpc.insecure_channel(self.router) as channel:
            stub = router_grpc.RouterServiceStub(channel)
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    stub.Complete(ask(f"Explain topic {n} briefly"), metadata=DEV_KEY, timeout=60)
                    self.answered += 1
                except grpc.RpcError as error:
                    self.failures.append(f"{error.code().name}: {error.details()}")


def test_a_killed_cache_comes_back_while_the_router_keeps_answering(tmp_path: Path) -> None:
    with sluice_up(tmp_path) as up:
        traffic = Traffic(up.address("router"))
        sender = threading.Thread(target=traffic.run, daemon=True)
        sender.start()
        try:
            victim = service_pid(up.process.pid, "cache")
            os.kill(victim, signal.SIGKILL)
            exited = up.wait_for_line(lambda line: line.startswith("cache exited"), 60)
            log = tmp_path / "logs" / "cache.log"
            assert exited == f"cache exited with code -9; restarting in 0.5s (log: {log})"
            restarted = up.wait_for_line(lambda line: line.startswith("cache restarted"), 60)
            assert f"log: {log})" in restarted
            assert service_pid(up.process.pid, "cache") != victim

            # Back on the same address: wait until it loaded its model and serves again.
            deadline = time.monotonic() + 240
            while not grpc_serving(up.address("cache")) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert grpc_serving(up.address("cache")), up.output()
            answered_meanwhile = traffic.answered
        finally:
            traffic.stop.set()
            sender.join(120)
        assert traffic.failures == [] and answered_meanwhile > 0
        # The restarted cache answers the router's lookups again: not SKIPPED. The router's
        # channel reconnects within its backoff (at most 2 s, shared/grpc_client.py), so the
        # first lookup after the cache serves may still find it down; wait for the condition.
        assert _router_reaches_the_cache(up.address("router"), within_s=60), up.output()
        assert "----- restart 1 after exit code -9 -----" in log.read_text()

        up.process.send_signal(signal.SIGINT)
        assert up.process.wait(90) == 0
    assert "stopping the mesh" in up.output()


def _router_reaches_the_cache(router: str, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    with grpc.insecure_channel(router) as channel:
        stub = router_grpc.RouterServiceStub(channel)
        while time.monotonic() < deadline:
            reply = stub.Complete(
                ask("What is the capital of France?"), metadata=DEV_KEY, timeout=60
            )
            if stage_lines(reply)["cache"].outcome != common_pb2.STAGE_OUTCOME_SKIPPED:
                return True
            time.sleep(0.2)
    return False

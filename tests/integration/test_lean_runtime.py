"""The mesh as `sluice up` runs it: no serving process maps torch (the embedding model runs
on ONNX Runtime), each one's memory can be read, and Ctrl-C stops every service in parallel,
within one drain bound rather than one per service."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from sluice.router.v1 import router_service_pb2_grpc as router_grpc

from shared.grpc_server import DEFAULT_DRAIN_GRACE_S
from shared.mesh import START_ORDER, process_rss_mb
from tests.support import DEV_KEY, ask

pytestmark = pytest.mark.integration
# Each service waits this long between NOT_SERVING and its drain. Longer than the default 2 s
# so that one-at-a-time stops (6 x 6 s) could not pass the bound below, which parallel ones
# (one announce plus the drain) meet with room to spare.
ANNOUNCE_S = 6.0
# Process exit, telemetry flush and a loaded machine's scheduling on top of the drain.
MARGIN_S = 8.0
# Shared objects that only torch or its CUDA/MKL companions bring.
HEAVY = re.compile(r"libtorch|libc10|libshm\.so|/torch/lib/|libcudart")


def service_pids(parent: int) -> dict[str, int]:
    found = {}
    for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        name = next((a.decode()[9:] for a in argv if a.startswith(b"services.")), None)
        if name:
            found[name] = int(pid)
    return found


def heavy_libraries(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split()[-1] for line in maps if HEAVY.search(line)}


def test_no_service_loads_torch_and_the_mesh_stops_within_one_drain(tmp_path):
    env = {
        **os.environ,
        "SLUICE_HOME": str(tmp_path),
        "SLUICE_SHUTDOWN_ANNOUNCE_S": str(ANNOUNCE_S),
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "shared.cli.main", "up", "--free-ports"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches it
    )
    assert up.stdout is not None
    try:
        said = []
        for line in up.stdout:
            said.append(line)
            if line.startswith("Stop with Ctrl-C"):
                break
        output = "".join(said)
        assert "Stop with Ctrl-C" in output, output
        router = re.search(r"^\s+router\s+grpc://(127\.0\.0\.1:\d+)", output, re.MULTILINE)
        assert router, output
        with grpc.insecure_channel(router[1]) as channel:
            stub = router_grpc.RouterServiceStub(channel)
            for n in range(5):  # a miss, a store and an embedding through every hop
                stub.Complete(ask(f"Explain topic {n} briefly"), metadata=DEV_KEY, timeout=60)

        pids = service_pids(up.pid)
        assert set(pids) == set(START_ORDER)
        assert {name: heavy_libraries(pid) for name, pid in pids.items()} == {
            name: set() for name in pids
        }
        assert all(process_rss_mb(pid) > 0 for pid in pids.values())

        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(timeout=ANNOUNCE_S + DEFAULT_DRAIN_GRACE_S + MARGIN_S) == 0
        assert all(process_rss_mb(pid) == 0 for pid in pids.values())
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        up.stdout.close()

"""The cache as a real process: `python -m services.cache` with the real MiniLM model.

Checks start-up (health turns SERVING once the model is loaded), exact and semantic hits on
the calibration sentences at the default threshold, a clean exit 0 on SIGTERM, and one-line
errors naming the variable for bad configuration or the file for a corrupt database. The
helpers here are shared with the other test_cache_* integration tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc
from sluice.common.v1 import common_pb2

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SERVICE = "sluice.cache.v1.SemanticCacheService"
# The first start on a machine exports the model to ONNX (~15 s, importing torch); later ones
# take ~1-2 s. Allow for a busy 2-core CI machine.
START_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def service_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "OTEL_"))}
    env.update(overrides)
    return env


def start(log_path: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    """Starts `python -m services.cache`; env defaults to a data dir beside the log."""
    env.setdefault("SLUICE_CACHE_DATA_DIR", str(log_path.parent / "data"))
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cache"],
            cwd=REPO,
            env=service_env(SLUICE_CACHE_LISTEN=f"127.0.0.1:{port}", **env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_serving(channel: grpc.Channel, process: subprocess.Popen[bytes], log: Path) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"cache exited with {process.returncode}:\n{log.read_text()}")
        try:
            status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=1).status
        except grpc.RpcError:
            status = None  # not listening yet
        if status == health_pb2.HealthCheckResponse.SERVING:
            return
        time.sleep(0.2)
    pytest.fail(f"cache not SERVING after {START_TIMEOUT_S}s:\n{log.read_text()}")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], grpc.Channel]]:
    port = free_port()
    process = start(tmp_path / "cache.log", port)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        wait_serving(channel, process, tmp_path / "cache.log")
        yield process, channel
    finally:
        channel.close()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def messages(question: str) -> list[common_pb2.ChatMessage]:
    return [
        common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content="Answer briefly."),
        common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=question),
    ]


CONTEXT = common_pb2.RequestContext(tenant_id="acme")
SAMPLING = common_pb2.SamplingParams(temperature=0.0, max_tokens=32)


def test_serves_exact_and_semantic_hits_then_exits_cleanly(running, tmp_path):
    process, channel = running
    stub = pb_grpc.SemanticCacheServiceStub(channel)
    store = pb.StoreRequest(
        context=CONTEXT,
        model_class="small",
        messages=messages("What is the capital of France?"),
        sampling=SAMPLING,
        content="Paris.",
        model="gpt-4o-mini",
        finish_reason=common_pb2.FINISH_REASON_STOP,
    )
    stored = stub.Store(store, timeout=30)

    def lookup(question: str) -> pb.LookupResponse:
        request = pb.LookupRequest(
            context=CONTEXT,
            model_class="small",
            messages=messages(question),
            sampling=SAMPLING,
            allow_semantic=True,
        )
        response: pb.LookupResponse = stub.Lookup(request, timeout=30)
        return response

    exact = lookup("What is the capital of France?")
    assert (exact.kind, exact.content, exact.entry_id) == (
        pb.HIT_KIND_EXACT,
        "Paris.",
        stored.entry_id,
    )
    # The calibration sentences of README.md at the default threshold (0.90).
    for paraphrase in ("What's the capital city of France?", "Tell me the capital of France"):
        hit = lookup(paraphrase)
        assert hit.kind == pb.HIT_KIND_SEMANTIC, paraphrase
        assert hit.content == "Paris."
        assert 0.9 <= hit.similarity < 1.0
    for different in ("What is the capital of Germany?", "What is the population of France?"):
        assert lookup(different).kind == pb.HIT_KIND_MISS, different

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, (tmp_path / "cache.log").read_text()


def test_bad_setting_exits_non_zero_naming_the_variable(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "services.cache"],
        cwd=REPO,
        env=service_env(SLUICE_CACHE_MIN_SIMILARITY="abc"),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    stderr = result.stderr.decode()
    assert "SLUICE_CACHE_MIN_SIMILARITY" in stderr
    assert "Traceback" not in stderr


def test_corrupt_database_stops_start_up_naming_the_file(tmp_path):
    database = tmp_path / "cache.db"
    database.write_bytes(b"definitely not SQLite " * 500)
    result = subprocess.run(
        [sys.executable, "-m", "services.cache"],
        cwd=REPO,
        env=service_env(
            SLUICE_CACHE_STORE=f"sqlite:///{database}", SLUICE_CACHE_LISTEN="127.0.0.1:0"
        ),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert f"cache database {database}" in stderr and "Traceback" not in stderr
    assert database.read_bytes().startswith(b"definitely not SQLite"), "left for the operator"

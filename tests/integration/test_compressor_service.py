"""The compressor as a real process: health, Compress on long and short prompts, SIGTERM drain,
and the abstractive strategy falling back to extraction when its dispatcher is unreachable."""

from __future__ import annotations

import contextlib
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
import sluice.compressor.v1.compressor_service_pb2 as compressor_pb2
import sluice.compressor.v1.compressor_service_pb2_grpc as compressor_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sluice.common.v1 import common_pb2

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "sluice.compressor.v1.PromptCompressorService"
# Importing torch and sentence-transformers takes ~5 s on an idle machine; CI machines are shared.
READY_TIMEOUT_S = 120.0
ANSWER = "The harbour master Ines Okafor keeps the spare anchor chain in shed number 14."
QUESTION = "In which shed is the spare anchor chain kept?"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def long_prompt() -> str:
    sentences = [
        f"Depot {i} in district {i % 17} received {i * 13} crates of {fruit} on day {i % 28}."
        for i, fruit in enumerate(["apples", "plums", "figs", "pears", "limes", "dates"] * 25)
    ]
    sentences.insert(90, ANSWER)
    paragraphs = [" ".join(sentences[i : i + 6]) for i in range(0, len(sentences), 6)]
    return "\n\n".join(paragraphs) + f"\n\n{QUESTION}"


def service_env(port: int) -> dict[str, str]:
    path = os.pathsep.join(
        [str(ROOT), str(ROOT / "shared" / "gen"), os.environ.get("PYTHONPATH", "")]
    )
    return {
        **os.environ,
        "PYTHONPATH": path,
        "SLUICE_COMPRESSOR_LISTEN": f"127.0.0.1:{port}",
        "SLUICE_COMPRESSOR_TARGET_RATIO": "0.25",
        # Nothing listens there: abstractive requests must fall back to extraction.
        "SLUICE_COMPRESSOR_DISPATCHER_ADDR": f"127.0.0.1:{free_port()}",
        "SLUICE_LOG_LEVEL": "INFO",
    }


def wait_until_serving(process: subprocess.Popen[bytes], channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"compressor exited early with {process.returncode}"
        try:
            status = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=1.0)
            if status.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass  # not listening yet
        time.sleep(0.2)
    pytest.fail(f"compressor not SERVING after {READY_TIMEOUT_S} s")


@contextlib.contextmanager
def serving_compressor(
    log_path: Path,
) -> Iterator[tuple[subprocess.Popen[bytes], compressor_grpc.PromptCompressorServiceStub]]:
    """A compressor process, SERVING; killed on the way out if the test left it running."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.compressor"],
            cwd=ROOT,
            env=service_env(port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_until_serving(process, channel)
            yield process, compressor_grpc.PromptCompressorServiceStub(channel)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serves_compresses_and_drains(tmp_path: Path) -> None:
    with serving_compressor(tmp_path / "compressor.log") as (process, stub):
        user = common_pb2.ROLE_USER
        long_request = compressor_pb2.CompressRequest(
            messages=[common_pb2.ChatMessage(role=user, content=long_prompt())],
            target_model="gpt-4o",
        )
        compressed = stub.Compress(long_request, timeout=60)
        assert compressed.original_tokens > 1500
        assert compressed.compressed
        assert compressed.strategy == "extractive"
        assert compressed.compressed_tokens < 0.4 * compressed.original_tokens
        assert ANSWER in compressed.messages[0].content
        assert compressed.messages[0].content.endswith(QUESTION)
        assert "nano-USD at gpt-4o" in compressed.reason

        abstractive = compressor_pb2.CompressRequest(
            messages=long_request.messages,
            target_model="gpt-4o",
            strategy=compressor_pb2.COMPRESSION_STRATEGY_ABSTRACTIVE,
        )
        degraded = stub.Compress(abstractive, timeout=60)
        assert degraded.compressed
        assert degraded.strategy == "extractive"
        assert "abstractive failed (dispatcher answered UNAVAILABLE" in degraded.reason
        assert ANSWER in degraded.messages[0].content
        assert degraded.cost_nano_usd == 0

        short_messages = [common_pb2.ChatMessage(role=user, content=QUESTION)]
        untouched = stub.Compress(
            compressor_pb2.CompressRequest(messages=short_messages), timeout=10
        )
        assert not untouched.compressed
        assert list(untouched.messages) == short_messages
        assert untouched.reason.startswith("below threshold")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    logged = (tmp_path / "compressor.log").read_text()
    assert "is SERVING" in logged and "stopped" in logged


def test_a_cold_document_longer_than_the_deadline_is_compressed_in_time(tmp_path: Path) -> None:
    # ~40k tokens the service has never seen: embedding all of it takes well over 10 s here.
    filler = [
        f"Warehouse {i} on pier {i % 31} logged {i * 7} barrels of {oil} oil in week {i % 52}."
        for i, oil in enumerate(["olive", "palm", "rapeseed", "sunflower", "linseed"] * 400)
    ]
    filler.insert(1200, ANSWER)
    document = "\n\n".join(" ".join(filler[i : i + 8]) for i in range(0, len(filler), 8))
    with serving_compressor(tmp_path / "compressor.log") as (_, stub):
        request = compressor_pb2.CompressRequest(
            messages=[
                common_pb2.ChatMessage(
                    role=common_pb2.ROLE_USER, content=f"{document}\n\n{QUESTION}"
                )
            ],
            target_model="gpt-4o",
        )
        started = time.monotonic()
        compressed = stub.Compress(request, timeout=3.0)
        elapsed = time.monotonic() - started

        assert elapsed < 3.0
        assert compressed.compressed
        assert "before the deadline, the rest ranked by BM25 alone" in compressed.reason
        # The answer shares the question's rare words, so it was among the first embedded.
        assert ANSWER in compressed.messages[0].content
        assert compressed.compressed_tokens < 0.4 * compressed.original_tokens


def test_bad_settings_exit_2_naming_the_variable() -> None:
    env = {**service_env(free_port()), "SLUICE_COMPRESSOR_MIN_TOKENS": "lots"}
    result = subprocess.run(
        [sys.executable, "-m", "services.compressor"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert b"SLUICE_COMPRESSOR_MIN_TOKENS" in result.stderr

"""The `sluice` command as a user runs it: `up`, then `ask`, then `trace`."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shared.mesh import GRPC_SERVICES, Mesh, free_port
from shared.otlp_receiver import OtlpReceiver, SpanRecord

pytestmark = pytest.mark.integration
SLUICE = [sys.executable, "-m", "shared.cli.main"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SLUICE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_ask_prints_answer_tier_cost_table_and_trace(mesh: Mesh) -> None:
    result = run("ask", "--router", mesh.address("router"), "What is the capital of France?")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("The capital of France is Paris.")
    assert re.search(r"answered by (tier 1 · Qwen/Qwen3-8B · region us-east|the cache)", out)
    for header in ("stage", "outcome", "cost (USD)", "cache", "total"):
        assert header in out
    assert re.search(r"baseline gpt-4o would cost \$\d\.\d{9}; cost avoided \$\d\.\d{9}", out)
    assert re.search(r"^trace [0-9a-f]{32}$", out, re.MULTILINE)


def test_ask_reports_a_bad_key_clearly(mesh: Mesh) -> None:
    result = run("ask", "--router", mesh.address("router"), "--api-key", "nope", "hi")
    assert result.returncode == 1
    assert "UNAUTHENTICATED: unknown API key" in result.stderr


def _has_whole_trace(spans: list[SpanRecord], tier: str, model: str) -> bool:
    """The router's root span, the answering tier's span and the dispatcher's priced chat span
    for its model: services export in their own batches, so a span count says nothing about
    which of them are in."""
    return (
        any(s.name == "/sluice.router.v1.RouterService/Complete" for s in spans)
        and any(s.name.startswith(f"tier {tier} {model}") for s in spans)
        and any(
            s.name.startswith(f"chat {model}")
            and s.service == "sluice-dispatcher"
            and "sluice.cost.usd" in s.attributes
            for s in spans
        )
    )


def test_trace_prints_the_span_tree(
    mesh: Mesh, mesh_and_traces: tuple[Mesh, OtlpReceiver], tmp_path: Path
) -> None:
    asked = run("ask", "--router", mesh.address("router"), "--no-cache", "Explain gRPC deadlines")
    trace_id = re.search(r"^trace ([0-9a-f]{32})$", asked.stdout, re.MULTILINE)
    # The simulator's seeded faults (errors, rate limits, malformed answers) can fail tier 1 for
    # this request, depending on how many requests the session sent before it; the cascade then
    # escalates. The trace must show whichever tier answered.
    answered = re.search(r"^answered by tier (\d+) · (\S+) ", asked.stdout, re.MULTILINE)
    assert trace_id and answered, asked.stdout
    tier, model = answered[1], answered[2]
    _, receiver = mesh_and_traces
    # A busy machine can hold a service's export back for many seconds: wait for the spans the
    # assertions need, not for a count or a fixed time.
    deadline = time.monotonic() + 120
    while (
        not _has_whole_trace(receiver.spans(trace_id[1]), tier, model)
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    spans = receiver.spans(trace_id[1])
    assert _has_whole_trace(spans, tier, model), (
        asked.stdout,
        [(s.service, s.name, s.attributes.get("sluice.cost.usd")) for s in spans],
    )
    journal = tmp_path / "traces.jsonl"
    journal.write_bytes(b"".join(s.to_json() + b"\n" for s in spans))
    shown = run("trace", trace_id[1], "--wait", "0", env={"SLUICE_HOME": str(tmp_path)})
    assert shown.returncode == 0, shown.stdout
    lines = shown.stdout.splitlines()
    assert lines[1].startswith("/sluice.router.v1.RouterService/Complete")
    assert any(line.startswith(f"  tier {tier} {model}") for line in lines)
    assert any(
        f"chat {model}" in line and "sluice-dispatcher" in line and "cost.usd=" in line
        for line in lines
    )


def test_up_runs_the_mesh_until_interrupted(tmp_path: Path) -> None:
    env = {**os.environ, "SLUICE_HOME": str(tmp_path), "SLUICE_SHUTDOWN_ANNOUNCE_S": "0.2"}
    process = subprocess.Popen(
        [*SLUICE, "up", "--free-ports"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Stop with Ctrl-C"):
                break
        output = "".join(lines)
        assert "Sluice is up" in output, output
        router = re.search(r"router\s+grpc://(127\.0\.0\.1:\d+)", output)
        assert router and all(
            name in output for name in ("cache", "compressor", "batcher", "dispatcher", "simulator")
        )
        # Each gRPC service's line names its Prometheus endpoint, which answers.
        metrics = re.findall(r"^  (\w+) +grpc://\S+  metrics (http://\S+/metrics)$", output, re.M)
        assert {name for name, _ in metrics} == set(GRPC_SERVICES), output
        assert all("sluice_grpc_server" in httpx.get(url, timeout=5).text for _, url in metrics)
        asked = run(
            "ask",
            "--router",
            router[1],
            "What is the capital of France?",
            env={"SLUICE_HOME": str(tmp_path)},
        )
        assert "Paris" in asked.stdout
        trace_id = re.search(r"^trace ([0-9a-f]{32})$", asked.stdout, re.MULTILINE)
        assert trace_id
        shown = run("trace", trace_id[1], "--wait", "5", env={"SLUICE_HOME": str(tmp_path)})
        assert "RouterService/Complete" in shown.stdout and "sluice-dispatcher" in shown.stdout
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_serve_simulator_starts_and_serves() -> None:
    env = {**os.environ, "SLUICE_SIMULATOR_LISTEN": "127.0.0.1:0"}
    process = subprocess.Popen(
        [*SLUICE, "serve", "simulator"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        listening = re.match(r"simulator listening on (http://127\.0\.0\.1:\d+)", first)
        assert listening, first + process.stdout.read()
        assert httpx.get(f"{listening[1]}/healthz", timeout=30).json() == {"status": "ok"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_a_service_started_by_hand_on_a_taken_address_names_it_in_one_line(
    tmp_path: Path,
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        result = subprocess.run(
            [sys.executable, "-m", "services.batcher"],
            capture_output=True,
            text=True,
            timeout=120,
            env={
                **os.environ,
                "SLUICE_BATCHER_LISTEN": address,
                "SLUICE_BATCHER_DATA_DIR": str(tmp_path),
            },
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot listen on {address}: the address is already in use (another process, "
        "perhaps an earlier Sluice service, holds it); stop it or set another *_LISTEN address"
    ]


def test_a_router_whose_http_address_is_taken_names_it_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        result = subprocess.run(
            [sys.executable, "-m", "services.router"],
            capture_output=True,
            text=True,
            timeout=120,
            env={
                **os.environ,
                "SLUICE_ROUTER_LISTEN": f"127.0.0.1:{free_port()}",
                "SLUICE_ROUTER_HTTP_LISTEN": address,
            },
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot listen on {address}: the address is already in use (another process, "
        "perhaps an earlier Sluice service, holds it); stop it or set another *_LISTEN address"
    ]

"""`sluice up --trace-ui` for real: a request's spans are read back from Arize Phoenix's REST API,
its cascade, tokens and cost readable there, while `sluice trace` still finds them locally.

Phoenix is some 860 MB and is installed on demand, so this runs only where an install exists:
`.sluice/phoenix-venv` of this checkout (the first `sluice up --trace-ui` makes it) or the venv
SLUICE_PHOENIX_VENV names. The test uses it in place and never installs anything.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.cli.phoenix import PROJECT, PhoenixVenv

SLUICE = [sys.executable, "-m", "shared.cli.main"]
REPO = Path(__file__).resolve().parents[2]


def installed_phoenix() -> PhoenixVenv | None:
    venv = PhoenixVenv(Path(os.environ.get("SLUICE_PHOENIX_VENV") or REPO / ".sluice/phoenix-venv"))
    return venv if venv.installed() else None


pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        installed_phoenix() is None,
        reason="Arize Phoenix is not installed: run `sluice up --trace-ui` once (it installs it "
        "into .sluice/phoenix-venv) or point SLUICE_PHOENIX_VENV at a venv that has it",
    ),
]


@pytest.fixture
def phoenix_venv() -> PhoenixVenv:
    venv = installed_phoenix()
    assert venv is not None
    return venv


def listening_hosts(port: int) -> set[str]:
    """The local addresses of sockets listening on port, from /proc/net (no `ss` needed)."""
    hosts = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                hosts.add(address)
    return hosts


LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, ::ffff:127.0.0.1


def phoenix_spans(ui: str, trace_id: str, *names: str) -> list[dict[str, Any]]:
    """The trace's spans from Phoenix's REST API once every named span is there."""
    deadline = time.monotonic() + 30
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        response = httpx.get(
            f"{ui}/v1/projects/{PROJECT}/spans", params={"trace_id": trace_id}, timeout=10
        )
        if response.status_code == 200:  # 404 until the project's first span arrives
            spans = response.json()["data"]
            if set(names) <= {s["name"] for s in spans}:
                return spans
        time.sleep(0.3)
    raise AssertionError(f"Phoenix has not {names} of {trace_id}: {[s['name'] for s in spans]}")


def named(spans: list[dict[str, Any]], name: str, kind: str) -> dict[str, Any]:
    found = [s for s in spans if s["name"] == name and s["span_kind"] == kind]
    assert len(found) == 1, f"{name} ({kind}): {[(s['name'], s['span_kind']) for s in spans]}"
    return found[0]


def test_a_requests_spans_are_read_back_from_phoenix(
    tmp_path: Path, phoenix_venv: PhoenixVenv
) -> None:
    env = {
        **os.environ,
        "SLUICE_HOME": str(tmp_path),
        "SLUICE_PHOENIX_VENV": str(phoenix_venv.path),
        "SLUICE_SHUTDOWN_ANNOUNCE_S": "0.2",
    }
    process = subprocess.Popen(
        [*SLUICE, "up", "--trace-ui", "--free-ports"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        for line in process.stdout:  # `sluice up` exits by itself if the mesh does not start
            lines.append(line)
            if line.startswith("Stop with Ctrl-C"):
                break
        output = "".join(lines)
        assert "installing Arize Phoenix" not in output, "an installed Phoenix is reused"
        ui = re.search(
            r"^  trace UI +(http://127\.0\.0\.1:(\d+)) +\(Arize Phoenix, project sluice; "
            r"its OTLP grpc://127\.0\.0\.1:(\d+)\)$",
            output,
            re.M,
        )
        door = re.search(r"^  openai +(http://\S+/v1)", output, re.M)
        assert ui and door, output

        prompt = f"What is the capital of France? ({uuid.uuid4().hex[:8]})"
        answered = httpx.post(
            f"{door[1]}/chat/completions",
            headers={"authorization": "Bearer dev"},
            json={"model": "auto", "messages": [{"role": "user", "content": prompt}]},
            timeout=60,
        )
        assert answered.status_code == 200, answered.text
        trace_id = answered.headers["x-sluice-trace-id"]
        usage = answered.json()["usage"]

        tier, chat = "tier 1 Qwen/Qwen3-8B", "chat Qwen/Qwen3-8B"
        spans = phoenix_spans(ui[1], trace_id, tier, chat)
        call = named(spans, chat, "LLM")["attributes"]
        assert call["llm.model_name"] == "Qwen/Qwen3-8B"
        assert call["llm.token_count.prompt"] == usage["prompt_tokens"]
        assert call["llm.token_count.completion"] == usage["completion_tokens"]
        assert call["llm.cost.total"] > 0 and call["sluice.region"]
        step = named(spans, tier, "CHAIN")["attributes"]
        assert step["sluice.tier"] == 1 and step["llm.cost.total"] == call["llm.cost.total"]
        root = named(spans, "POST /v1/chat/completions", "CHAIN")["attributes"]  # the door
        assert root["sluice.cost_avoided.usd"] > 0
        # One LLM call in Phoenix's eyes, so its token totals count the provider call once.
        assert [s["name"] for s in spans if s["span_kind"] == "LLM"] == [chat]
        assert not [s for s in spans if prompt in repr(s["attributes"])]

        # Phoenix listens on loopback only, its gRPC collector included.
        for port in (int(ui[2]), int(ui[3])):
            assert listening_hosts(port) and listening_hosts(port) <= LOOPBACK, port

        shown = subprocess.run(
            [*SLUICE, "trace", trace_id, "--wait", "5"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        assert "sluice-dispatcher" in shown.stdout, shown.stdout + shown.stderr

        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
        assert not listening_hosts(int(ui[2])), "Phoenix stops with the mesh"
    finally:
        if process.poll() is None:
            process.kill()  # Phoenix dies with it (PR_SET_PDEATHSIG)
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


# `sluice up`'s part alone: start Phoenix, say its port once it answers, then wait to be killed.
STARTS_PHOENIX = """
import os, sys, threading
from pathlib import Path
from shared.cli.phoenix import PhoenixPorts, PhoenixServer, PhoenixVenv
server = PhoenixServer(PhoenixVenv(Path(sys.argv[1])), PhoenixPorts.pick(True), Path(sys.argv[2]))
server.start(os.environ)
server.wait_ready(threading.Event())
print(server.ports.ui, server.ports.otlp, flush=True)
threading.Event().wait()
"""


def test_phoenix_dies_with_sluice_up_even_by_sigkill(
    tmp_path: Path, phoenix_venv: PhoenixVenv
) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", STARTS_PHOENIX, str(phoenix_venv.path), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert parent.stdout is not None
        ports = [int(p) for p in parent.stdout.readline().split()]
        assert len(ports) == 2 and all(listening_hosts(p) for p in ports), ports
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 60
        while any(listening_hosts(p) for p in ports) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(listening_hosts(p) for p in ports), "Phoenix outlived sluice up"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()

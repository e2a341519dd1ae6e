"""`sluice up`: the whole mesh plus the provider simulator on loopback, with a local trace store.

Every service is supervised: one that exits is started again with backoff while the rest keep
serving, and Ctrl-C (SIGINT) or SIGTERM stops them all.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from shared.cli.keys import DEFAULT_QUESTION, KeyHint, key_hint
from shared.cli.phoenix import (
    PROJECT,
    PhoenixError,
    PhoenixServer,
    project_resource,
    start_trace_ui,
)
from shared.cli.replay import ReplaySetupError, replay_env
from shared.cli.supervisor import Supervisor
from shared.mesh import (
    DEFAULT_PORTS,
    PORT_OWNERS,
    START_ORDER,
    Mesh,
    free_port,
    free_ports,
    taken_ports,
)
from shared.otlp_receiver import OtlpReceiver
from shared.settings import SettingsError, env_int

# How often the supervisor looks for exited services.
_CHECK_EVERY_S = 0.5
_READY_TIMEOUT_S = 180.0


def _trace_env(
    state: Path, env: Mapping[str, str], phoenix: PhoenixServer | None = None
) -> tuple[OtlpReceiver | None, dict[str, str]]:
    """Starts a local OTLP receiver unless the user already points traces somewhere; with
    --trace-ui it hands every export on to Phoenix too."""
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None, {}
    receiver = OtlpReceiver(
        f"127.0.0.1:{free_port()}",
        state / "traces.jsonl",
        max_traces=env_int(env, "SLUICE_TRACES_KEPT", 1000, minimum=1),
        journal_max_bytes=env_int(env, "SLUICE_TRACES_JOURNAL_MB", 64, minimum=1) * 1024 * 1024,
        forward=phoenix.forwarder(lambda line: print(line, flush=True)) if phoenix else None,
    ).start()
    project = {"OTEL_RESOURCE_ATTRIBUTES": project_resource(env)} if phoenix else {}
    return receiver, {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        # Flush spans within a fraction of a second so `sluice trace` sees them at once.
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        **project,
    }


def port_conflicts(ports: Mapping[str, int]) -> str:
    """A message naming every taken port and what it was meant for; "" when all are free."""
    taken = taken_ports(ports)
    if not taken:
        return ""
    lines = [
        f"  {PORT_OWNERS[name]} cannot listen on 127.0.0.1:{port}: the address is already in use"
        for name, port in taken.items()
    ]
    return "\n".join(
        [
            "the mesh cannot start:",
            *lines,
            "Stop what holds the port (`ss -ltnp` shows it; often an earlier `sluice up`), "
            "or run `sluice up --free-ports` to pick free ports.",
        ]
    )


def run_up(state: Path, *, replay: Path | None, free: bool, trace_ui: bool = False) -> int:
    state.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {
        "SLUICE_CACHE_DATA_DIR": str(state / "cache"),
        "SLUICE_BATCHER_DATA_DIR": str(state / "batcher"),
        # Durable, so `sluice report` in another terminal reads what this mesh served, and the
        # dev key may read every tenant's usage (`sluice report --all-tenants`).
        "SLUICE_ROUTER_USAGE": f"sqlite:///{(state / 'usage.sqlite3').resolve()}",
        "SLUICE_ROUTER_USAGE_ADMIN_TENANTS": "dev",
    }
    question = DEFAULT_QUESTION
    phoenix: PhoenixServer | None = None
    try:
        if replay is not None:
            wired, data = replay_env(replay, state, os.environ)
            env.update(wired)
            question = data.shortest_prompt
        ports = free_ports() if free else dict(DEFAULT_PORTS)
        conflicts = port_conflicts(ports)
        if conflicts:
            print(conflicts, flush=True)
            return 1
        if trace_ui:
            phoenix = start_trace_ui(state, free=free, env=os.environ, say=print)
        receiver, trace_env = _trace_env(state, os.environ, phoenix)
    except (ReplaySetupError, SettingsError, PhoenixError) as error:
        print(f"sluice up: {error}", flush=True)
        if phoenix is not None:
            phoenix.stop()
        return 2
    mesh = Mesh.plan(ports, state / "logs", {**env, **trace_env})
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print("starting the Sluice mesh (the cache and compressor load their embedding model) ...")
    try:
        mesh.start_all()
        if not _wait_ready(mesh, stop) or (phoenix and not phoenix.wait_ready(stop)):
            return 0
        _print_addresses(mesh, receiver, state, key_hint(mesh.env, question), phoenix)
        supervisor = Supervisor(mesh, time.monotonic, lambda line: print(line, flush=True))
        supervisor.adopt_all(mesh.processes.items())
        while not stop.wait(_CHECK_EVERY_S):
            supervisor.check()
    except (RuntimeError, TimeoutError) as error:
        print(f"the mesh did not start: {error}", flush=True)
        return 1
    finally:
        print("stopping the mesh ...", flush=True)
        mesh.stop_all()
        if receiver is not None:
            receiver.stop()
        if phoenix is not None:
            phoenix.stop()
    return 0


def _wait_ready(mesh: Mesh, stop: threading.Event) -> bool:
    """Waits until every service is ready; False when the user stopped the wait."""
    deadline = time.monotonic() + _READY_TIMEOUT_S
    pending = list(START_ORDER)
    while pending and not stop.is_set():
        pending = [name for name in pending if not mesh.is_ready(name)]
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {_READY_TIMEOUT_S:.0f}s: {', '.join(pending)}")
        if pending:
            stop.wait(0.2)
    return not stop.is_set()


def _try_commands(mesh: Mesh, hint: KeyHint) -> str:
    """`sluice ask` and curl lines that work as printed, whatever the question's quotes."""
    key_flag = "" if hint.key == "dev" else f" --api-key {shlex.quote(hint.key)}"
    body = {"model": "auto", "messages": [{"role": "user", "content": hint.question}]}
    return (
        f"  .venv/bin/sluice ask --router {mesh.address('router')}{key_flag} "
        f"{shlex.quote(hint.question)}\n"
        f"  curl -s http://{mesh.address('router_http')}/v1/chat/completions "
        f"-H {shlex.quote('authorization: Bearer ' + hint.key)} -d {shlex.quote(json.dumps(body))}"
    )


def _print_addresses(
    mesh: Mesh,
    receiver: OtlpReceiver | None,
    state: Path,
    hint: KeyHint,
    phoenix: PhoenixServer | None = None,
) -> None:
    print("\nSluice is up:")
    for name in START_ORDER:
        scheme = "http://" if name == "simulator" else "grpc://"
        metrics = mesh.metrics_url(name)
        also = f"  metrics {metrics}" if metrics else ""
        print(f"  {name:<11} {scheme}{mesh.address(name)}{also}")
    print(f"  openai      http://{mesh.address('router_http')}/v1  (OpenAI-compatible)")
    if receiver is not None:
        print(f"  traces      {receiver.endpoint} (OTLP) -> {state / 'traces.jsonl'}")
    if phoenix is not None:
        print(
            f"  trace UI    {phoenix.ui_url}  (Arize Phoenix, project {PROJECT}; "
            f"its OTLP grpc://{phoenix.otlp_address})"
        )
    print(f"  logs        {mesh.log_dir} (the previous run's as *.log.1)")
    print(f"\n{hint.describe()}")
    if hint.key:
        print(_try_commands(mesh, hint))
    print("A service that exits is restarted with backoff.")
    print("Stop with Ctrl-C.", flush=True)

"""`sluice up`: the whole mesh plus the provider simulator on loopback, with a local trace store."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from shared.mesh import DEFAULT_PORTS, START_ORDER, Mesh, free_port, free_ports
from shared.otlp_receiver import OtlpReceiver


def _trace_env(state: Path) -> tuple[OtlpReceiver | None, dict[str, str]]:
    """Starts a local OTLP receiver unless the user already points traces somewhere."""
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None, {}
    journal = state / "traces.jsonl"
    receiver = OtlpReceiver(f"127.0.0.1:{free_port()}", journal).start()
    return receiver, {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        # Flush spans within a fraction of a second so `sluice trace` sees them at once.
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }


def run_up(state: Path, *, replay: Path | None, free: bool) -> int:
    state.mkdir(parents=True, exist_ok=True)
    receiver, env = _trace_env(state)
    env.setdefault("SLUICE_CACHE_DATA_DIR", str(state / "cache"))
    env.setdefault("SLUICE_BATCHER_DATA_DIR", str(state / "batcher"))
    if replay is not None:
        env["SLUICE_SIMULATOR_REPLAY_DIR"] = str(replay.resolve())
    ports = free_ports() if free else dict(DEFAULT_PORTS)
    mesh = Mesh.plan(ports, state / "logs", env)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print("starting the Sluice mesh (the cache and compressor load their embedding model) ...")
    try:
        mesh.start_all()
        mesh.wait_ready()
        _print_addresses(mesh, receiver, state)
        while not stop.wait(1.0):
            for name in START_ORDER:
                if mesh.processes[name].poll() is not None:
                    print(f"{name} exited; see {mesh.log_dir / (name + '.log')}")
                    return 1
    except (RuntimeError, TimeoutError) as error:
        print(f"the mesh did not start: {error}")
        return 1
    finally:
        print("stopping the mesh ...")
        mesh.stop_all()
        if receiver is not None:
            receiver.stop()
    return 0


def _print_addresses(mesh: Mesh, receiver: OtlpReceiver | None, state: Path) -> None:
    print("\nSluice is up:")
    for name in START_ORDER:
        scheme = "http://" if name == "simulator" else "grpc://"
        print(f"  {name:<11} {scheme}{mesh.address(name)}")
    print(
        f"  openai      http://{mesh.address('router_http')}/v1  (OpenAI-compatible, API key dev)"
    )
    if receiver is not None:
        print(f"  traces      {receiver.endpoint} (OTLP) -> {state / 'traces.jsonl'}")
    print(f"  logs        {mesh.log_dir}")
    router = mesh.address("router")
    print("\nTry it (API key `dev`, tenant `dev`):")
    print(f'  .venv/bin/sluice ask --router {router} "What is the capital of France?"')
    print(
        f"  curl -s http://{mesh.address('router_http')}/v1/chat/completions -H 'authorization: "
        'Bearer dev\' -d \'{"model": "auto", "messages": [{"role": "user", '
        '"content": "What is the capital of France?"}]}\''
    )
    print("Stop with Ctrl-C.", flush=True)

"""Mesh: logs start fresh per run, a taken port is found, and the mesh stops in parallel."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.grpc_server import AddressInUseError, ensure_address_free
from shared.mesh import DEFAULT_PORTS, Mesh, more_free_ports, port_taken, taken_ports


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_listening_port_is_taken_and_a_closed_one_is_not(listening: int) -> None:
    assert port_taken(listening)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    assert not port_taken(closed)
    assert taken_ports({"router": listening, "cache": closed}) == {"router": listening}


def test_a_service_refuses_a_taken_listen_address_naming_it(listening: int) -> None:
    with pytest.raises(AddressInUseError, match=rf"cannot listen on 127\.0\.0\.1:{listening}: "):
        ensure_address_free(f"127.0.0.1:{listening}")
    ensure_address_free("127.0.0.1:0")  # port 0 is always free


def test_plan_keeps_the_previous_run_log_once_and_starts_fresh(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "cache.log").write_text("run 2\n")
    (logs / "cache.log.1").write_text("run 1\n")
    (logs / "router.log").write_text("run 2 router\n")

    Mesh.plan(DEFAULT_PORTS, logs)

    assert not (logs / "cache.log").exists() and not (logs / "router.log").exists()
    assert (logs / "cache.log.1").read_text() == "run 2\n"
    assert (logs / "router.log.1").read_text() == "run 2 router\n"


# Exits 0 on SIGTERM only once every sibling got its SIGTERM too (each leaves a marker file):
# stopped one after another, the first would wait for the others until it is killed.
_WAITS_FOR_SIBLINGS = """
import pathlib, signal, sys, time
here, me, count = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def on_term(*_):
    (here / me).touch()
    while len(list(here.iterdir())) < count:
        time.sleep(0.05)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def test_stop_all_signals_every_service_before_waiting_for_any(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    names = ("dispatcher", "cache", "router")
    mesh = Mesh({}, tmp_path, {})
    for name in names:
        process = subprocess.Popen(
            [sys.executable, "-c", _WAITS_FOR_SIBLINGS, str(markers), name, str(len(names))],
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        process.stdout.close()
        mesh.processes[name] = process

    codes = mesh.stop_all(timeout_s=60)

    assert codes == {"router": 0, "cache": 0, "dispatcher": 0}
    assert mesh.processes == {}


def test_more_free_ports_never_hands_out_a_port_another_mesh_was_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The OS hands back a just-released port readily; here it offers every planned one first.
    planned = [_bound_then_released() for _ in range(3)]
    offered = iter(planned)
    real_bind = socket.socket.bind

    def bind_planned_first(sock: socket.socket, address: tuple[str, int]) -> None:
        port = next(offered, 0) if address[1] == 0 else address[1]
        real_bind(sock, (address[0], port))

    monkeypatch.setattr(socket.socket, "bind", bind_planned_first)
    picked = more_free_ports(("router", "router_http"), set(planned))

    assert set(picked) == {"router", "router_http"}
    assert not set(picked.values()) & set(planned)
    assert len(set(picked.values())) == 2


def _bound_then_released() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port

"""`sluice up` names a taken port and how to get around it, before it starts anything."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.cli import up
from shared.mesh import Mesh, free_ports


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_taken_port_is_named_with_its_service_and_the_fix(
    listening: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ports = {**free_ports(), "router_http": listening}
    monkeypatch.setattr(up, "DEFAULT_PORTS", ports)
    started: list[str] = []
    monkeypatch.setattr(Mesh, "start_all", lambda _: started.append("mesh"))

    assert up.run_up(tmp_path, replay=None, free=False) == 1

    out = capsys.readouterr().out
    assert (
        f"the router's OpenAI HTTP front door cannot listen on 127.0.0.1:{listening}: "
        "the address is already in use"
    ) in out
    assert "sluice up --free-ports" in out
    assert "Traceback" not in out and started == []


def test_a_bad_replay_folder_is_named_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert up.run_up(tmp_path, replay=tmp_path / "nope", free=True) == 2
    assert "--replay" in capsys.readouterr().out

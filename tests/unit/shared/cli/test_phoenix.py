"""`sluice up --trace-ui` without Phoenix itself: the install is made once and reused, a failed
or interrupted one is named and retried, taken ports and a user's own OTLP endpoint stop it
before anything starts, and the receiver hands each export on whole."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from shared.cli import phoenix, up
from shared.cli.phoenix import (
    PhoenixError,
    PhoenixForwarder,
    PhoenixPorts,
    PhoenixVenv,
    project_resource,
    start_trace_ui,
)
from shared.otlp_receiver import OtlpReceiver


class Recorder:
    """Stands in for subprocess.run: records commands, makes the venv's python, can fail."""

    def __init__(self, venv: Path, fail_on: str = "", interrupt: bool = False) -> None:
        self.commands: list[list[str]] = []
        self._venv, self._fail_on, self._interrupt = venv, fail_on, interrupt

    def __call__(self, command: list[str], check: bool) -> None:
        assert check
        self.commands.append(command)
        if self._interrupt:
            raise KeyboardInterrupt
        if self._fail_on and self._fail_on in command:
            raise subprocess.CalledProcessError(1, command)
        if "venv" in command:
            (self._venv / "bin").mkdir(parents=True)
            (self._venv / "bin" / "python").touch()


def test_phoenix_is_installed_into_its_own_venv_once_and_then_reused(tmp_path: Path) -> None:
    venv = PhoenixVenv(tmp_path / "phoenix-venv")
    said: list[str] = []
    run = Recorder(venv.path)

    venv.ensure(said.append, run)
    assert [c[1:3] for c in run.commands] == [["-m", "venv"], ["-m", "pip"]]
    assert run.commands[1] == [str(venv.python), "-m", "pip", "install", "arize-phoenix"]
    assert venv.installed() and "installing Arize Phoenix" in said[0]

    venv.ensure(said.append, run)
    assert len(run.commands) == 2 and len(said) == 1


def test_a_failed_pip_is_named_and_the_next_run_tries_again(tmp_path: Path) -> None:
    venv = PhoenixVenv(tmp_path / "phoenix-venv")
    with pytest.raises(PhoenixError, match=r"pip install arize-phoenix` exited 1"):
        venv.ensure(lambda _: None, Recorder(venv.path, fail_on="pip"))
    assert not venv.installed()

    again = Recorder(venv.path)
    venv.ensure(lambda _: None, again)
    # The venv is there already; only pip runs again.
    assert [c[1:3] for c in again.commands] == [["-m", "pip"]] and venv.installed()


def test_an_interrupted_install_says_the_next_run_completes_it(tmp_path: Path) -> None:
    venv = PhoenixVenv(tmp_path / "phoenix-venv")
    with pytest.raises(PhoenixError, match="interrupted; the next `sluice up --trace-ui`"):
        venv.ensure(lambda _: None, Recorder(venv.path, interrupt=True))
    assert not venv.installed()


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_taken_phoenix_port_is_named_with_the_fix(listening: int) -> None:
    free = PhoenixPorts.pick(free=True)
    assert free.ui != free.otlp and free.conflicts() == ""
    message = PhoenixPorts(listening, free.otlp).conflicts()
    assert f"Phoenix's UI cannot listen on 127.0.0.1:{listening}" in message
    assert "--free-ports" in message and "OTLP" not in message


def test_a_users_own_otlp_endpoint_stops_trace_ui_before_anything_is_installed(
    tmp_path: Path,
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
    with pytest.raises(PhoenixError, match="http://collector:4317; unset it or drop --trace-ui"):
        start_trace_ui(tmp_path, free=True, env=env, say=print)
    assert not (tmp_path / "phoenix-venv").exists()


def test_sluice_up_names_the_conflict_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    started: list[Any] = []
    monkeypatch.setattr(phoenix.PhoenixServer, "start", lambda *a: started.append(a))

    assert up.run_up(tmp_path, replay=None, free=True, trace_ui=True) == 2
    out = capsys.readouterr().out
    assert out.startswith("sluice up: --trace-ui sends the mesh's traces to Phoenix")
    assert started == []


def test_the_project_attribute_keeps_the_users_resource_attributes() -> None:
    assert project_resource({}) == "openinference.project.name=sluice"
    assert project_resource({"OTEL_RESOURCE_ATTRIBUTES": "team=ml"}) == (
        "team=ml,openinference.project.name=sluice"
    )


def export(name: str) -> trace_service_pb2.ExportTraceServiceRequest:
    resource = resource_pb2.Resource(
        attributes=[
            common_pb2.KeyValue(
                key="service.name", value=common_pb2.AnyValue(string_value="sluice-router")
            )
        ]
    )
    span = trace_pb2.Span(
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
        name=name,
        events=[trace_pb2.Span.Event(name="an event the local journal does not keep")],
    )
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource, scope_spans=[trace_pb2.ScopeSpans(spans=[span])]
            )
        ]
    )


def test_the_receiver_hands_each_export_on_whole_and_says_a_failure_once() -> None:
    got: list[trace_service_pb2.ExportTraceServiceRequest] = []
    downstream = OtlpReceiver(forward=got.append).start()  # stands in for Phoenix
    said: list[str] = []
    forwarder = PhoenixForwarder(f"127.0.0.1:{downstream.port}", said.append)
    local = OtlpReceiver(forward=forwarder).start()
    try:
        request = export("tier 1 Qwen/Qwen3-8B")
        with grpc.insecure_channel(f"127.0.0.1:{local.port}") as channel:
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=10)
        # Kept locally for `sluice trace`, and handed on with what the journal drops (events).
        assert [s.name for s in local.spans()] == ["tier 1 Qwen/Qwen3-8B"]
        assert got == [request] and said == []

        downstream.stop()
        forwarder(export("lost"))
        forwarder(export("lost too"))
        assert len(said) == 1 and said[0].startswith("traces: Phoenix did not take spans")
        assert "`sluice trace` still has them" in said[0]
    finally:
        local.stop()
        downstream.stop()
        forwarder.close()


def test_the_forwarder_says_when_phoenix_takes_spans_again() -> None:
    port = PhoenixPorts.pick(free=True).otlp
    said: list[str] = []
    forwarder = PhoenixForwarder(f"127.0.0.1:{port}", said.append)
    try:
        forwarder(export("before Phoenix is up"))
        downstream = OtlpReceiver(f"127.0.0.1:{port}").start()
        try:
            deadline = time.monotonic() + 15
            while len(said) < 2 and time.monotonic() < deadline:
                forwarder(export("after"))  # gRPC reconnects with backoff
                time.sleep(0.1)
            assert said[1] == "traces: Phoenix takes spans again"
            assert [s.name for s in downstream.spans()][-1] == "after"
        finally:
            downstream.stop()
    finally:
        forwarder.close()

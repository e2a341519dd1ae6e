"""The local trace receiver stays bounded: old traces leave memory, the journal rotates."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from shared.otlp_receiver import OtlpReceiver, read_journal, rotated


def trace_id(n: int) -> str:
    return f"{n:032x}"


def export_request(trace: int, spans: int = 3) -> trace_service_pb2.ExportTraceServiceRequest:
    service = common_pb2.KeyValue(
        key="service.name", value=common_pb2.AnyValue(string_value="sluice-test")
    )
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(attributes=[service]),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        spans=[
                            trace_pb2.Span(
                                trace_id=bytes.fromhex(trace_id(trace)),
                                span_id=(trace * 100 + n + 1).to_bytes(8, "big"),
                                name=f"span {n}",
                                start_time_unix_nano=1_000 + n,
                                end_time_unix_nano=2_000 + n,
                            )
                            for n in range(spans)
                        ]
                    )
                ],
            )
        ]
    )


@pytest.fixture
def started() -> Iterator[list[OtlpReceiver]]:
    """Receivers a test appends here are stopped after it."""
    receivers: list[OtlpReceiver] = []
    yield receivers
    for receiver in receivers:
        receiver.stop()


def send(receiver: OtlpReceiver, *traces: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{receiver.port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        for trace in traces:
            stub.Export(export_request(trace), timeout=10)


def test_memory_keeps_only_the_most_recent_traces(started: list[OtlpReceiver]) -> None:
    receiver = OtlpReceiver(max_traces=5).start()
    started.append(receiver)

    send(receiver, *range(1, 41))

    assert receiver.received == 120
    assert receiver.trace_count() == 5
    assert len(receiver.spans()) == 15
    assert receiver.spans(trace_id(3)) == []  # evicted, oldest first
    assert [s.name for s in receiver.spans(trace_id(40))] == ["span 0", "span 1", "span 2"]
    assert {s.trace_id for s in receiver.spans()} == {trace_id(n) for n in range(36, 41)}


def test_a_trace_still_receiving_spans_is_not_evicted(started: list[OtlpReceiver]) -> None:
    receiver = OtlpReceiver(max_traces=5).start()
    started.append(receiver)

    send(receiver, 1)
    for newer in range(2, 12):
        send(receiver, newer, 1)  # trace 1 keeps receiving spans between newer traces

    assert [s.name for s in receiver.spans(trace_id(1))][:3] == ["span 0", "span 1", "span 2"]
    assert len(receiver.spans(trace_id(1))) == 33
    assert receiver.spans(trace_id(2)) == []


def test_the_journal_rotates_and_a_trace_is_still_found_in_the_previous_file(
    tmp_path: Path, started: list[OtlpReceiver]
) -> None:
    journal = tmp_path / "traces.jsonl"
    receiver = OtlpReceiver(journal=journal, journal_max_bytes=4_000).start()
    started.append(receiver)

    send(receiver, *range(1, 61))

    assert rotated(journal).exists()
    # One previous file is kept: together they never hold much more than twice the bound.
    assert journal.stat().st_size < 4_000
    assert rotated(journal).stat().st_size < 4_000 + 2_000
    assert not journal.with_name("traces.jsonl.2").exists()
    previous_lines = rotated(journal).read_bytes().splitlines()
    newest_in_previous = max(
        int(line.split(b'"trace_id":"')[1][:32], 16) for line in previous_lines
    )
    assert len(read_journal(journal, trace_id(newest_in_previous))) == 3
    assert len(read_journal(journal, trace_id(60))) == 3
    assert read_journal(journal, trace_id(1)) == []  # rotated out twice: gone


def test_sluice_trace_prints_a_trace_found_only_in_the_rotated_journal(
    tmp_path: Path, started: list[OtlpReceiver]
) -> None:
    journal = tmp_path / "traces.jsonl"
    receiver = OtlpReceiver(journal=journal, journal_max_bytes=500).start()
    started.append(receiver)
    send(receiver, 7)  # three spans of some 200 bytes: past the bound, rotated at once
    assert not journal.exists() and rotated(journal).exists()

    shown = subprocess.run(
        [sys.executable, "-m", "shared.cli.main", "trace", trace_id(7), "--wait", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SLUICE_HOME": str(tmp_path)},
        check=False,
    )

    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert f"trace {trace_id(7)}: 3 spans" in shown.stdout
    assert "span 2" in shown.stdout

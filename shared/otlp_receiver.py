"""A small OTLP/gRPC trace receiver: `sluice up` uses it as the local trace store, and the
telemetry tests use it to read the spans every service exported.

It implements the collector's TraceService.Export from opentelemetry-proto and keeps spans as
plain records; no Jaeger binary is needed on a developer machine.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import orjson
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2


@dataclass(frozen=True)
class SpanRecord:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    service: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def from_json(cls, line: bytes | str) -> SpanRecord:
        return cls(**orjson.loads(line))


def _value(any_value: common_pb2.AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


def records_from_request(request: trace_service_pb2.ExportTraceServiceRequest) -> list[SpanRecord]:
    records = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        service = str(resource.get("service.name", "unknown"))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                records.append(
                    SpanRecord(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        service=service,
                        kind=span.kind,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status_code=span.status.code,
                        attributes={a.key: _value(a.value) for a in span.attributes},
                    )
                )
    return records


# Hands a whole export on elsewhere after the receiver has kept it (`sluice up --trace-ui`).
Forward = Callable[[trace_service_pb2.ExportTraceServiceRequest], None]


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: Callable[[list[SpanRecord]], None], forward: Forward | None) -> None:
        self._sink = sink
        self._forward = forward

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._sink(records_from_request(request))
        if self._forward is not None:
            self._forward(request)
        return trace_service_pb2.ExportTraceServiceResponse()


# Enough recent traces for a test or a developer to look one up, while a long `sluice up` stays
# flat: a request's trace is some 10-20 spans of about 1 KB each.
DEFAULT_MAX_TRACES = 1000
# The journal is rotated to `<name>.1` past this size; one previous file is kept.
DEFAULT_JOURNAL_MAX_BYTES = 64 * 1024 * 1024


class OtlpReceiver:
    """Receives spans on host:port. Keeps the spans of the max_traces most recently updated
    traces in memory (none when keep is off, for long runs that only count them), optionally
    appends them to a journal file rotated past journal_max_bytes, and optionally forwards
    each export unchanged."""

    def __init__(
        self,
        address: str = "127.0.0.1:0",
        journal: Path | None = None,
        *,
        keep: bool = True,
        max_traces: int = DEFAULT_MAX_TRACES,
        journal_max_bytes: int = DEFAULT_JOURNAL_MAX_BYTES,
        forward: Forward | None = None,
    ) -> None:
        if max_traces < 1 or journal_max_bytes < 1:
            raise ValueError("max_traces and journal_max_bytes must be positive")
        self._lock = threading.Lock()
        # Insertion order is first-seen order, so the first entry is the oldest trace.
        self._traces: OrderedDict[str, list[SpanRecord]] = OrderedDict()
        self._keep = keep
        self._max_traces = max_traces
        self.received = 0
        self._journal = journal
        self._journal_max_bytes = journal_max_bytes
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceService(self._receive, forward), self._server
        )
        self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot bind the OTLP receiver to {address}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _receive(self, records: list[SpanRecord]) -> None:
        with self._lock:
            self.received += len(records)
            if self._keep:
                self._remember(records)
            if self._journal is not None:
                self._append(self._journal, records)

    def _remember(self, records: list[SpanRecord]) -> None:
        for record in records:
            self._traces.setdefault(record.trace_id, []).append(record)
            # A trace still receiving spans is recent: services export in their own batches,
            # seconds apart on a busy machine, and evicting by first arrival dropped a trace's
            # early spans while its late ones came back as a partial trace.
            self._traces.move_to_end(record.trace_id)
        while len(self._traces) > self._max_traces:
            self._traces.popitem(last=False)

    def _append(self, journal: Path, records: list[SpanRecord]) -> None:
        with journal.open("ab") as handle:
            handle.writelines(r.to_json() + b"\n" for r in records)
            size = handle.tell()
        if size >= self._journal_max_bytes:
            journal.replace(rotated(journal))

    def spans(self, trace_id: str | None = None) -> list[SpanRecord]:
        with self._lock:
            if trace_id is not None:
                return list(self._traces.get(trace_id, ()))
            return [s for spans in self._traces.values() for s in spans]

    def trace_count(self) -> int:
        with self._lock:
            return len(self._traces)

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=1).wait()


def rotated(journal: Path) -> Path:
    """Where the previous journal goes when the current one is full."""
    return journal.with_name(journal.name + ".1")


def read_journal(path: Path, trace_id: str) -> list[SpanRecord]:
    """The trace's spans from the journal and the previous (rotated) file."""
    found: list[SpanRecord] = []
    for source in (rotated(path), path):
        if not source.exists():
            continue
        with source.open("rb") as handle:
            # A line is checked for the id before it is parsed: most lines are other traces.
            found.extend(
                SpanRecord.from_json(line)
                for line in handle
                if trace_id.encode() in line and line.endswith(b"\n")
            )
    return [s for s in found if s.trace_id == trace_id]


def span_tree(spans: Iterable[SpanRecord]) -> list[tuple[int, SpanRecord]]:
    """Orders spans depth-first from their roots, with each span's depth."""
    spans = sorted(spans, key=lambda s: s.start_ns)
    ids = {s.span_id for s in spans}
    children: dict[str, list[SpanRecord]] = {}
    for span in spans:
        children.setdefault(span.parent_span_id if span.parent_span_id in ids else "", []).append(
            span
        )
    ordered: list[tuple[int, SpanRecord]] = []
    stack = [(0, s) for s in reversed(children.get("", []))]
    while stack:
        depth, span = stack.pop()
        ordered.append((depth, span))
        stack.extend((depth + 1, c) for c in reversed(children.get(span.span_id, [])))
    return ordered

"""`sluice trace`: prints one trace from the local journal that `sluice up` writes."""

from __future__ import annotations

import time
from pathlib import Path

from shared.otlp_receiver import SpanRecord, read_journal, span_tree

_SHOWN = (
    "sluice.stage",
    "sluice.tier",
    "gen_ai.request.model",
    "sluice.region",
    "sluice.cost.usd",
    "sluice.cost_avoided.usd",
    "sluice.cache.hit_kind",
)


def format_span(depth: int, span: SpanRecord) -> str:
    details = " ".join(
        f"{k.removeprefix('sluice.').removeprefix('gen_ai.')}={span.attributes[k]}"
        for k in _SHOWN
        if k in span.attributes and span.attributes[k] not in ("", None)
    )
    label = f"{'  ' * depth}{span.name}"
    return f"{label:<70}{span.service:<20}{span.duration_ms:>9.2f} ms  {details}"


def run_trace(trace_id: str, state: Path, wait_s: float) -> int:
    journal = state / "traces.jsonl"
    deadline = time.monotonic() + wait_s
    spans = read_journal(journal, trace_id)
    # Services export in batches; give the last ones a moment to arrive.
    while time.monotonic() < deadline:
        time.sleep(0.5)
        latest = read_journal(journal, trace_id)
        if spans and len(latest) == len(spans):
            break
        spans = latest
    if not spans:
        print(f"no spans for trace {trace_id} in {journal}")
        return 1
    print(f"trace {trace_id}: {len(spans)} spans")
    for depth, span in span_tree(spans):
        print(format_span(depth, span))
    return 0

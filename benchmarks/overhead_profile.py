"""Where the mesh spends a request: CPU ms per request for every process, each stage's and hop's
time from the request's spans, and optionally a py-spy profile of each process.

    python -m benchmarks.overhead_profile [--path miss|exact|semantic] [--requests N]
        [--concurrency C] [--spans] [--py-spy DIR]

Runs the whole mesh as `benchmarks.overhead` does, drives one path through the router's HTTP
door, and reads each process's user+system CPU time from /proc before and after. CPU time per
request does not depend on what else the machine runs, unlike latency, so it is the figure to
compare before and after a change. With --spans, the mesh exports its spans to a receiver in
this process (exporting costs the services some CPU of its own, so the CPU figures of such a run
are a little higher) and each span's median start, from the request's first span, and median
duration are printed in the order of the path: the hop-by-hop picture. With --py-spy (py-spy on
PATH or in the venv), each process is also sampled for 10 s into DIR/<service>.txt (collapsed
stacks). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from benchmarks.common import DEFAULT_DATA
from benchmarks.overhead import Prompts, running_mesh
from benchmarks.overhead_http import KeepAliveClient
from benchmarks.overhead_load import RunResult, closed_loop, openai_sender
from benchmarks.overhead_procs import cpu_ms_per_request, cpu_snapshot
from shared.mesh import Mesh
from shared.otlp_receiver import OtlpReceiver, SpanRecord

# A batch exporter sends every few seconds: spans have arrived once their count stops growing.
SPANS_SETTLED_S = 8.0
SPANS_WAIT_S = 20.0


async def drive(mesh: Mesh, prompts: list[str], concurrency: int) -> RunResult:
    client = KeepAliveClient(f"http://{mesh.address('router_http')}", concurrency)
    try:
        send = openai_sender(client, "/v1/chat/completions", "dev", "auto", sluice=True)
        return await closed_loop(send, prompts, concurrency)
    finally:
        await client.aclose()


def workload(path: str, prompts: Prompts, n: int) -> tuple[list[str], list[str]]:
    """(asked first, not measured; measured) for the path."""
    if path == "miss":
        return prompts.take(64), prompts.take(n)
    if path == "exact":
        seeds = prompts.take(min(n, 200))
        return seeds, list(itertools.islice(itertools.cycle(seeds), n))
    pairs = prompts.paraphrases[:n]
    return [origin for origin, _ in pairs], [similar for _, similar in pairs]


# 10 s at 50 samples/s, collapsed stacks (one "frame;frame;... count" line per stack).
SPY_ARGS = ("-d", "10", "-r", "50", "-f", "raw")


def spy(mesh: Mesh, out: Path, native: bool) -> list[subprocess.Popen[bytes]]:
    """py-spy on every process; native adds C and Cython frames (gRPC's core, ONNX)."""
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out.mkdir(parents=True, exist_ok=True)
    args = [*SPY_ARGS, "--native"] if native else list(SPY_ARGS)
    return [
        subprocess.Popen(
            [found, "record", *args, "-o", str(out / f"{name}.txt"), "-p", str(process.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, process in mesh.processes.items()
    ]


def settled_spans(receiver: OtlpReceiver) -> list[SpanRecord]:
    """Every span received, once none has come for SPANS_SETTLED_S (a batch exporter sends
    every few seconds) or SPANS_WAIT_S have passed: background work keeps some spans coming."""
    seen, quiet_since = -1, time.monotonic()
    deadline = quiet_since + SPANS_WAIT_S
    while time.monotonic() - quiet_since < SPANS_SETTLED_S and time.monotonic() < deadline:
        if receiver.received != seen:
            seen, quiet_since = receiver.received, time.monotonic()
        time.sleep(0.5)
    return receiver.spans()


def stage_table(spans: Sequence[SpanRecord], since_ns: int) -> list[dict[str, object]]:
    """Per (service, span name) over the traces started after `since_ns`: how many, the median
    start from its trace's first span, and the median duration, in order of start."""
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    starts: dict[tuple[str, str], list[float]] = defaultdict(list)
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    for trace in by_trace.values():
        first = min(s.start_ns for s in trace)
        if first < since_ns:
            continue
        for span in trace:
            key = (span.service.removeprefix("sluice-"), span.name)
            starts[key].append((span.start_ns - first) / 1e6)
            durations[key].append(span.duration_ms)
    rows = [
        {
            "service": service,
            "span": name,
            "count": len(durations[(service, name)]),
            "start_ms": round(statistics.median(starts[(service, name)]), 2),
            "duration_ms": round(statistics.median(durations[(service, name)]), 2),
        }
        for service, name in durations
    ]
    return sorted(rows, key=lambda row: (float(str(row["start_ms"])), str(row["service"])))


def print_stages(rows: Sequence[dict[str, object]]) -> None:
    print(f"{'service':11s} {'span':58s} {'n':>5s} {'start ms':>9s} {'dur ms':>8s}")
    for row in rows:
        print(
            f"{row['service']!s:11s} {str(row['span'])[:58]:58s} {row['count']!s:>5s} "
            f"{row['start_ms']!s:>9s} {row['duration_ms']!s:>8s}"
        )


def by_kind_ms(result: RunResult) -> dict[str, dict[str, float]]:
    """p50 and p99 of each kind of answer (exact, semantic, miss), in ms."""
    return {
        kind: {
            "p50": round(float(np.percentile(found, 50)) * 1000, 2),
            "p99": round(float(np.percentile(found, 99)) * 1000, 2),
        }
        for kind, found in result.by_kind.items()
        if found
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--path", choices=("miss", "exact", "semantic"), default="miss")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--spans", action="store_true", help="time each stage from spans")
    parser.add_argument("--py-spy", type=Path, default=None, help="write profiles here")
    parser.add_argument("--native", action="store_true", help="py-spy: C frames too")
    args = parser.parse_args(argv)
    prompts = Prompts(args.data)
    stages: list[dict[str, object]] = []
    with ExitStack() as stack:
        receiver = stack.enter_context(_receiver()) if args.spans else None
        log_dir = Path(tempfile.mkdtemp(prefix="sluice-profile-"))
        mesh = stack.enter_context(running_mesh(log_dir, args.spans, receiver))
        first, measured = workload(args.path, prompts, args.requests)
        asyncio.run(drive(mesh, first, args.concurrency))
        spies = spy(mesh, args.py_spy, args.native) if args.py_spy else []
        before, own, since_ns = cpu_snapshot(mesh), os.times(), time.time_ns()
        result = asyncio.run(drive(mesh, measured, args.concurrency))
        own_after = os.times()
        done = max(1, len(result.latencies_s))
        per_request = cpu_ms_per_request(mesh, before, done)
        per_request["client"] = round(
            1000 * (own_after.user + own_after.system - own.user - own.system) / done, 2
        )
        rss_mb = mesh.rss_mb()
        for process in spies:
            process.wait()
        if receiver is not None:
            stages = stage_table(settled_spans(receiver), since_ns)
    if stages:
        print_stages(stages)
    for name, ms in per_request.items():
        print(f"{name:12s} {ms:6.2f} CPU ms per request")
    summary = {
        "path": args.path,
        "concurrency": args.concurrency,
        "requests": done,
        "errors": result.errors,
        "rps": round(result.rps, 1),
        "p50_ms": round(result.percentile_ms(50), 2),
        "p99_ms": round(result.percentile_ms(99), 2),
        "kinds": result.kinds,
        # The semantic row of overhead.py reads the semantic hits' latencies only; the
        # paraphrases the cache turns away are misses that go upstream, counted apart.
        "by_kind_ms": by_kind_ms(result),
        "cpu_ms_per_request": per_request,
        "mesh_cpu_ms_per_request": round(sum(per_request.values()) - per_request["client"], 2),
        "rss_mb": rss_mb,
        "load": os.getloadavg(),
    }
    print(json.dumps(summary))


@contextmanager
def _receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver(max_traces=100_000).start()
    try:
        yield receiver
    finally:
        receiver.stop()


if __name__ == "__main__":
    main()

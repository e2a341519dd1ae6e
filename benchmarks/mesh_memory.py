"""Each mesh process's memory: after start, and after serving the overhead benchmark's traffic.

    python -m benchmarks.mesh_memory [--requests N] [--before DIR]

Starts the mesh as benchmarks/overhead.py does (no LiteLLM), reads every process's RSS once all
report SERVING, then drives the overhead benchmark's miss, exact and semantic paths (at 1, 16
and 64 concurrent requests, `--requests` each) and reads it again. RSS is split as /proc's
/proc/<pid>/status splits it: anonymous memory (heaps, arenas, thread stacks) and file-backed pages
(mapped shared libraries and model files), with the thread count, since each thread can hold
a malloc arena and a stack.

With `--before DIR` (a checkout of an earlier commit, e.g. from `git worktree add`), the same
is done first for a mesh run from that checkout, one mesh at a time, and the table shows both
side by side with their ratio. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import DEFAULT_DATA
from benchmarks.overhead import (
    Bench,
    Prompts,
    exact_phase,
    mesh_from,
    miss_phase,
    semantic_phase,
)
from benchmarks.overhead_procs import NOT_THE_GATEWAY
from shared.mesh import Mesh

LEVELS = [1, 16, 64]
# /proc/<pid>/status fields shown, in kB there, as MB here.
STATUS_FIELDS = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "Threads": "threads"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--requests", type=int, default=150, help="requests per path and level")
    parser.add_argument("--before", type=Path, default=None, help="an earlier checkout")
    return parser.parse_args(argv)


def process_memory(pid: int) -> dict[str, float]:
    """RSS, anonymous and file-backed resident MB, and the thread count, of one process."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in STATUS_FIELDS:
            value = int(rest.split()[0])
            out[STATUS_FIELDS[key]] = value if key == "Threads" else round(value / 1024, 1)
    return out


def snapshot(mesh: Mesh) -> dict[str, dict[str, float]]:
    return {name: process_memory(p.pid) for name, p in mesh.processes.items()}


def gateway_sum(snap: dict[str, dict[str, float]]) -> float:
    return round(sum(m["rss"] for n, m in snap.items() if n not in NOT_THE_GATEWAY), 1)


def measure(tree: Path | None, args: argparse.Namespace) -> dict[str, dict[str, dict[str, float]]]:
    """Memory after start and after traffic, of a mesh run from `tree` (None: this one)."""
    prompts = Prompts(args.data)
    log_dir = Path(tempfile.mkdtemp(prefix="sluice-memory-"))
    with mesh_from(tree, log_dir) as mesh:
        started = snapshot(mesh)
        bench = Bench(mesh, args.requests)
        miss_phase(bench, prompts, LEVELS)
        exact_phase(bench, prompts, LEVELS)
        semantic_phase(bench, prompts, LEVELS)
        served = snapshot(mesh)
    return {"started": started, "served": served}


def show(label: str, runs: dict[str, dict[str, dict[str, dict[str, float]]]]) -> None:
    names = list(next(iter(runs.values()))[label])
    print(f"\n{label}: RSS MB (anon / file, threads)")
    print(f"{'process':12s}" + "".join(f"{run:>32s}" for run in runs))
    for name in [*names, "gateway"]:
        cells = []
        for run in runs.values():
            snap = run[label]
            if name == "gateway":
                cells.append(f"{gateway_sum(snap):32.1f}")
                continue
            m = snap[name]
            cells.append(
                f"{m['rss']:8.1f} ({m['anon']:6.1f} / {m['file']:5.1f}, {m['threads']:3.0f})".rjust(
                    32
                )
            )
        print(f"{name:12s}" + "".join(cells))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    runs = {}
    if args.before is not None:
        runs["before"] = measure(args.before.resolve(), args)
    runs["after"] = measure(None, args)
    for label in ("started", "served"):
        show(label, runs)
    figures: dict[str, object] = {
        f"{run}_gateway_rss_mb_{label}": gateway_sum(snaps[label])
        for run, snaps in runs.items()
        for label in snaps
    }
    figures["rss_mb_by_process"] = {
        run: {n: m["rss"] for n, m in snaps["served"].items()} for run, snaps in runs.items()
    }
    figures["load_after"] = os.getloadavg()
    print(json.dumps(figures), file=sys.stdout)


if __name__ == "__main__":
    main()

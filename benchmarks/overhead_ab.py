"""Two checkouts' meshes side by side in one run: exact hits and misses through each router.

    python -m benchmarks.overhead_ab --old DIR [--new DIR] [--requests 3000] [--rounds 3]

Starts the whole mesh twice, once from each checkout (e.g. a `git worktree` of the commit
before a change, and this one), both up at the same time, and drives them in turn with the
overhead benchmark's client: per round, at every concurrency (1, 16, 64), exact hits on each
(200 prompts asked once, then repeated), then misses one at a time (unique prompts), the order
of the two meshes alternating between rounds so load from outside falls on both alike. Prints
each side's exact-hit p50/p99/req/s and its router's CPU ms per exact hit and per miss, pooled
over the rounds, with the new/old ratios and the load average. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_DATA
from benchmarks.overhead import Prompts, mesh_from
from benchmarks.overhead_load import RunResult
from benchmarks.overhead_procs import cpu_seconds
from benchmarks.overhead_profile import drive
from shared.mesh import Mesh

LEVELS = (1, 16, 64)
SEEDS = 200
MISSES_PER_ROUND = 100


class Side:
    """One checkout's mesh, its prompts and what was measured on it."""

    def __init__(self, name: str, mesh: Mesh, prompts: Prompts) -> None:
        self.name = name
        self.mesh = mesh
        self.seeds = prompts.take(SEEDS)
        self._prompts = prompts
        self.hits: dict[int, list[float]] = {c: [] for c in LEVELS}
        self.hit_wall: dict[int, float] = dict.fromkeys(LEVELS, 0.0)
        self.cpu_s = {"exact": 0.0, "miss": 0.0}
        self.count = {"exact": 0, "miss": 0}
        self.errors = 0
        self.kinds: dict[str, int] = {}

    def _run(self, path: str, prompts: list[str], concurrency: int) -> RunResult:
        router = self.mesh.processes["router"].pid
        before = cpu_seconds(router)
        result = asyncio.run(drive(self.mesh, prompts, concurrency))
        self.cpu_s[path] += cpu_seconds(router) - before
        self.count[path] += len(result.latencies_s)
        self.errors += result.errors
        for kind, latencies in result.by_kind.items():
            self.kinds[f"{path}:{kind}"] = self.kinds.get(f"{path}:{kind}", 0) + len(latencies)
        return result

    def exact(self, n: int, concurrency: int) -> None:
        repeats = list(itertools.islice(itertools.cycle(self.seeds), n))
        result = self._run("exact", repeats, concurrency)
        self.hits[concurrency].extend(result.latencies_s)
        self.hit_wall[concurrency] += result.wall_s

    def misses(self, n: int) -> None:
        self._run("miss", self._prompts.take(n), 1)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for c, latencies in self.hits.items():
            ms = sorted(1000 * s for s in latencies)
            out[f"exact_p50_ms_c{c}"] = round(statistics.median(ms), 2)
            out[f"exact_p99_ms_c{c}"] = round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2)
            out[f"exact_rps_c{c}"] = round(len(ms) / self.hit_wall[c], 1)
        for path in ("exact", "miss"):
            per = 1000 * self.cpu_s[path] / max(1, self.count[path])
            out[f"router_cpu_ms_per_{path}"] = round(per, 3)
        out["errors"] = self.errors
        out["kinds"] = self.kinds
        return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--old", type=Path, required=True, help="the checkout before")
    parser.add_argument("--new", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--requests", type=int, default=3000, help="exact hits per part")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="sluice-ab-"))
    loads = [os.getloadavg()]
    with ExitStack() as stack:
        old, new = (
            Side(name, stack.enter_context(mesh_from(checkout, logs / name)), Prompts(args.data))
            for name, checkout in (("old", args.old), ("new", args.new))
        )
        for side in (old, new):
            # Answered once (a miss, stored), then asked again: the repeats find a copy.
            asyncio.run(drive(side.mesh, side.seeds, 16))
            asyncio.run(drive(side.mesh, side.seeds, 16))
        for round_no in range(args.rounds):
            order = (old, new) if round_no % 2 == 0 else (new, old)
            for c in LEVELS:
                for side in order:
                    side.exact(args.requests, c)
            for side in order:
                side.misses(MISSES_PER_ROUND)
            loads.append(os.getloadavg())
        result = {"old": old.summary(), "new": new.summary()}
    ratios = {
        key: round(value / result["old"][key], 3)
        for key, value in result["new"].items()
        if isinstance(value, float) and result["old"][key]
    }
    for key, ratio in ratios.items():
        print(f"{key:28s} old {result['old'][key]:>9} new {result['new'][key]:>9}  x{ratio}")
    print(f"load average (1 min) during the run: {[round(load[0], 1) for load in loads]}")
    print(json.dumps({**result, "new_over_old": ratios, "load": loads}))


if __name__ == "__main__":
    main()

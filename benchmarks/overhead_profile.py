"""Where the mesh spends CPU on a request: CPU ms per request for every process, and optionally
a py-spy profile of each (issue #8's profiling step).

    python -m benchmarks.overhead_profile [--path miss|exact|semantic] [--requests N]
        [--concurrency C] [--py-spy DIR]

Runs the whole mesh as `benchmarks.overhead` does, drives one path through the router's HTTP
door, and reads each process's user+system CPU time from /proc before and after. CPU time per
request does not depend on what else the machine runs, unlike latency, so it is the figure to
compare before and after a change. With --py-spy (py-spy on PATH or in the venv), each process
is also sampled for 10 s into DIR/<service>.txt (collapsed stacks). The last line printed is one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import DEFAULT_DATA
from benchmarks.overhead import Prompts, running_mesh
from benchmarks.overhead_http import KeepAliveClient
from benchmarks.overhead_load import RunResult, closed_loop, openai_sender
from shared.mesh import Mesh


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def spy(mesh: Mesh, out: Path) -> list[subprocess.Popen[bytes]]:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [found, "record", *SPY_ARGS, "-o", str(out / f"{name}.txt"), "-p", str(process.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, process in mesh.processes.items()
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--path", choices=("miss", "exact", "semantic"), default="miss")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--py-spy", type=Path, default=None, help="write profiles here")
    args = parser.parse_args(argv)
    prompts = Prompts(args.data)
    with running_mesh(Path(tempfile.mkdtemp(prefix="sluice-profile-")), traces=False) as mesh:
        first, measured = workload(args.path, prompts, args.requests)
        asyncio.run(drive(mesh, first, args.concurrency))
        spies = spy(mesh, args.py_spy) if args.py_spy else []
        before = {name: cpu_seconds(p.pid) for name, p in mesh.processes.items()}
        own = os.times()
        result = asyncio.run(drive(mesh, measured, args.concurrency))
        own_after = os.times()
        done = max(1, len(result.latencies_s))
        per_request = {
            name: round(1000 * (cpu_seconds(p.pid) - before[name]) / done, 2)
            for name, p in mesh.processes.items()
        }
        per_request["client"] = round(
            1000 * (own_after.user + own_after.system - own.user - own.system) / done, 2
        )
        for process in spies:
            process.wait()
    for name, ms in per_request.items():
        print(f"{name:12s} {ms:6.2f} CPU ms per request")
    summary = {
        "path": args.path,
        "concurrency": args.concurrency,
        "requests": done,
        "errors": result.errors,
        "rps": round(result.rps, 1),
        "kinds": result.kinds,
        "cpu_ms_per_request": per_request,
        "mesh_cpu_ms_per_request": round(sum(per_request.values()) - per_request["client"], 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

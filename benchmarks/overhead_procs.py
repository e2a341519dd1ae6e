"""What the mesh's processes hold and spend, read from /proc (Linux): resident memory and CPU
time. CPU time per request does not depend on what else the machine runs, unlike latency, so it
is the figure to compare before and after a change on a busy machine."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from shared.mesh import Mesh

# The upstream stands in for a provider: it is not part of the gateway, so its memory is shown
# apart and not counted in the mesh's sum (LiteLLM's figure does not count it either).
NOT_THE_GATEWAY = frozenset({"simulator"})


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mesh_rss(mesh: Mesh) -> dict[str, float]:
    """Each process's RSS in MB, by service name."""
    return mesh.rss_mb()


def gateway_rss_mb(by_process: Mapping[str, float]) -> float:
    """The mesh's summed RSS, without the upstream simulator."""
    return round(sum(mb for name, mb in by_process.items() if name not in NOT_THE_GATEWAY), 1)


def cpu_snapshot(mesh: Mesh) -> dict[str, float]:
    return {name: cpu_seconds(p.pid) for name, p in mesh.processes.items()}


def cpu_ms_per_request(mesh: Mesh, before: Mapping[str, float], requests: int) -> dict[str, float]:
    """Each process's CPU ms per request since `before` (a cpu_snapshot)."""
    done = max(1, requests)
    return {
        name: round(1000 * (cpu_seconds(p.pid) - before[name]) / done, 2)
        for name, p in mesh.processes.items()
    }

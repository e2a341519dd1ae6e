"""What the soak test watches on the machine: each process's RSS and the CPU's busy share."""

from __future__ import annotations

from pathlib import Path

from shared.mesh import process_rss_mb as rss_mib

# A process may grow this much over the second half of a run before it counts as unbounded:
# allocators and caches settle in steps, a leak keeps climbing.
RSS_SLACK_SHARE = 0.15
RSS_SLACK_MIB = 25.0


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


class MachineProbe:
    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._rss: dict[str, list[float]] = {name: [] for name in pids}
        self._cpu_start = cpu_times()
        self._cpu_end = self._cpu_start

    def start(self) -> None:
        self._cpu_start = cpu_times()

    def sample(self) -> None:
        for name, pid in self._pids.items():
            self.record(name, rss_mib(pid))
        self._cpu_end = cpu_times()

    def record(self, name: str, mib: float) -> None:
        self._rss.setdefault(name, []).append(mib)

    def cpu_utilisation(self) -> float:
        """Busy share of the whole machine (all cores) between start() and the last sample."""
        busy = self._cpu_end[0] - self._cpu_start[0]
        total = self._cpu_end[1] - self._cpu_start[1]
        return busy / total if total else 0.0

    def rss_summary(self) -> dict[str, tuple[float, float, float]]:
        """Per process: RSS at the first sample, the middle one and the last, in MiB."""
        return {
            name: (round(s[0], 1), round(s[len(s) // 2], 1), round(s[-1], 1))
            for name, s in self._rss.items()
            if s
        }

    def rss_bounded(self) -> bool:
        """No process still growing over the second half of the run beyond the slack."""
        for first_middle_last in self.rss_summary().values():
            _, middle, last = first_middle_last
            if last - middle > max(RSS_SLACK_MIB, middle * RSS_SLACK_SHARE):
                return False
        return True

"""Keeps every service of a local mesh running: a process that exits is started again.

Restarts back off exponentially (0.5 s, 1 s, 2 s, ... up to a cap), the way Kubernetes'
CrashLoopBackOff does, so a service that dies at once on every start costs little; a process that
stayed up for a while is trusted again and its next restart is quick. The rest of the mesh keeps
serving meanwhile: the router skips a dead cache, compressor or batcher (README, "degrades").

The class knows nothing of subprocesses or wall time: it is given a launcher and a clock, so the
tests drive it with fake processes and a fake clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Child(Protocol):
    """What the supervisor needs of a process: subprocess.Popen has it."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...


class Launcher(Protocol):
    """Starts services; Mesh is one."""

    def start(self, name: str, note: str = "") -> Child: ...

    def log_path(self, name: str) -> Path: ...


@dataclass(frozen=True)
class Backoff:
    """Restart delays: first_s, doubling up to max_s; reset once a process stayed up stable_s."""

    first_s: float = 0.5
    max_s: float = 30.0
    stable_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s:
            raise ValueError(
                f"backoff needs 0 < first_s <= max_s, got {self.first_s}, {self.max_s}"
            )


@dataclass
class _Watched:
    """One service's current life and its restart history."""

    process: Child | None
    started_at: float
    next_delay_s: float
    restart_at: float = 0.0
    last_exit: int | None = None
    restarts: int = 0


class Supervisor:
    """Polls every service on each check(); restarts the ones that exited, with backoff."""

    def __init__(
        self,
        launcher: Launcher,
        clock: Callable[[], float],
        report: Callable[[str], None],
        backoff: Backoff | None = None,
    ) -> None:
        self._launcher = launcher
        self._clock = clock
        self._report = report
        self._backoff = backoff or Backoff()
        self._watched: dict[str, _Watched] = {}

    def adopt(self, name: str, process: Child) -> None:
        """Watches a process that was started (and found ready) before supervision began."""
        self._watched[name] = _Watched(process, self._clock(), self._backoff.first_s)

    def adopt_all(self, processes: Iterable[tuple[str, Child]]) -> None:
        for name, process in processes:
            self.adopt(name, process)

    def restarts(self, name: str) -> int:
        return self._watched[name].restarts

    def down(self) -> list[str]:
        """Services waiting for their restart."""
        return [name for name, watched in self._watched.items() if watched.process is None]

    def check(self) -> None:
        """One round: notices exits and schedules their restart; starts the ones now due."""
        now = self._clock()
        for name, watched in self._watched.items():
            if watched.process is None:
                if now >= watched.restart_at:
                    self._restart(name, watched, now)
                continue
            code = watched.process.poll()
            if code is not None:
                self._schedule(name, watched, code, now)

    def _schedule(self, name: str, watched: _Watched, code: int, now: float) -> None:
        if now - watched.started_at >= self._backoff.stable_s:
            watched.next_delay_s = self._backoff.first_s
        delay = watched.next_delay_s
        watched.next_delay_s = min(delay * 2, self._backoff.max_s)
        watched.process, watched.last_exit, watched.restart_at = None, code, now + delay
        self._report(
            f"{name} exited with code {code}; restarting in {delay:.1f}s "
            f"(log: {self._launcher.log_path(name)})"
        )

    def _restart(self, name: str, watched: _Watched, now: float) -> None:
        watched.restarts += 1
        note = f"restart {watched.restarts} after exit code {watched.last_exit}"
        try:
            watched.process = self._launcher.start(name, note)
        except OSError as error:
            # Could not even spawn (out of memory, file descriptors): try again later.
            watched.restart_at = now + watched.next_delay_s
            self._report(f"{name} could not be started again: {error}; retrying")
            return
        watched.started_at = now
        self._report(
            f"{name} restarted (restart {watched.restarts}, pid {watched.process.pid}, "
            f"log: {self._launcher.log_path(name)})"
        )

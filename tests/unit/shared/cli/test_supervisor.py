"""The supervisor restarts exited services with backoff, driven by fake processes and a clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.cli.supervisor import Backoff, Supervisor


@dataclass
class FakeProcess:
    pid: int
    code: int | None = None

    def poll(self) -> int | None:
        return self.code


@dataclass
class FakeLauncher:
    started: list[tuple[str, str]] = field(default_factory=list)
    processes: dict[str, FakeProcess] = field(default_factory=dict)
    fail_next: bool = False

    def start(self, name: str, note: str = "") -> FakeProcess:
        if self.fail_next:
            self.fail_next = False
            raise OSError("no more processes")
        self.started.append((name, note))
        self.processes[name] = FakeProcess(pid=100 + len(self.started))
        return self.processes[name]

    def log_path(self, name: str) -> Path:
        return Path("/logs") / f"{name}.log"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def supervised(*names: str) -> tuple[Supervisor, FakeLauncher, Clock, list[str]]:
    launcher, clock = FakeLauncher(), Clock()
    lines: list[str] = []
    supervisor = Supervisor(launcher, clock, lines.append, Backoff(0.5, 4.0, 60.0))
    for name in names:
        supervisor.adopt(name, launcher.start(name))
    launcher.started.clear()
    return supervisor, launcher, clock, lines


def test_a_running_service_is_left_alone() -> None:
    supervisor, launcher, clock, lines = supervised("cache", "router")
    for _ in range(10):
        clock.now += 1
        supervisor.check()
    assert launcher.started == [] and lines == []


def test_an_exited_service_is_restarted_after_the_first_delay_with_a_log_marker() -> None:
    supervisor, launcher, clock, lines = supervised("cache", "router")
    launcher.processes["cache"].code = -9

    supervisor.check()
    assert lines == ["cache exited with code -9; restarting in 0.5s (log: /logs/cache.log)"]
    assert supervisor.down() == ["cache"]
    clock.now += 0.4
    supervisor.check()
    assert launcher.started == []  # not before the delay

    clock.now += 0.1
    supervisor.check()
    assert launcher.started == [("cache", "restart 1 after exit code -9")]
    assert lines[-1].startswith("cache restarted (restart 1, pid ")
    assert lines[-1].endswith("log: /logs/cache.log)")
    assert supervisor.down() == [] and supervisor.restarts("cache") == 1
    assert launcher.processes["router"].poll() is None


def crash_and_measure_delay(supervisor: Supervisor, launcher: FakeLauncher, clock: Clock) -> float:
    """Kills the cache, then steps the clock by 0.25 s (exact in binary) until it is restarted."""
    launcher.processes["cache"].code = 1
    supervisor.check()
    waited = 0.0
    before = len(launcher.started)
    while len(launcher.started) == before:
        clock.now += 0.25
        waited += 0.25
        supervisor.check()
    return waited


def test_delays_double_up_to_the_cap_while_the_service_keeps_dying() -> None:
    supervisor, launcher, clock, _ = supervised("cache")
    delays = [crash_and_measure_delay(supervisor, launcher, clock) for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_the_delay_resets_once_the_service_stayed_up_long_enough() -> None:
    supervisor, launcher, clock, _ = supervised("cache")
    assert [crash_and_measure_delay(supervisor, launcher, clock) for _ in range(3)] == [
        0.5,
        1.0,
        2.0,
    ]
    clock.now += 61
    assert crash_and_measure_delay(supervisor, launcher, clock) == 0.5


def test_a_failed_spawn_is_reported_and_retried() -> None:
    supervisor, launcher, clock, lines = supervised("cache")
    launcher.processes["cache"].code = 1
    supervisor.check()
    launcher.fail_next = True
    clock.now += 0.5
    supervisor.check()
    assert lines[-1] == "cache could not be started again: no more processes; retrying"
    assert supervisor.down() == ["cache"]
    clock.now += 1.0
    supervisor.check()
    assert supervisor.down() == [] and launcher.started


def test_backoff_rejects_a_first_delay_above_the_cap() -> None:
    with pytest.raises(ValueError, match="first_s"):
        Backoff(first_s=5, max_s=1)

"""Bounded background work: cache stores, hit reports and audit cascades.

This work runs after the caller has its answer, so it must never pile up without bound nor
fail silently: at most `concurrency` jobs run at once and up to `backlog` more wait for a slot;
beyond that a job is dropped, counted and logged. `drain` (called at shutdown) waits for what
is pending.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

LOG = logging.getLogger(__name__)


class BackgroundJobs:
    def __init__(
        self,
        name: str,
        concurrency: int,
        backlog: int,
        expected: tuple[type[Exception], ...] = (),
    ) -> None:
        if concurrency < 1 or backlog < 0:
            raise ValueError("concurrency must be at least 1 and backlog not negative")
        # The name says which work was dropped or failed in the logs ("cache audit").
        self._name = name
        # Failures that are part of normal operation (a peer that is down): one warning line,
        # not a stack trace.
        self._expected = expected
        self._slots = asyncio.Semaphore(concurrency)
        self._limit = concurrency + backlog
        self._tasks: set[asyncio.Task[None]] = set()
        self.done = 0
        self.failed = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def submit(self, job: Callable[[], Awaitable[object]]) -> bool:
        """Starts the job in the background; False when it was dropped (the backlog is full).
        The job is a factory so that a dropped job never creates a coroutine left unawaited."""
        return self.start(job) is not None

    def start(self, job: Callable[[], Awaitable[object]]) -> asyncio.Task[None] | None:
        """As submit, returning the job's task to wait on (never to cancel), or None."""
        if len(self._tasks) >= self._limit:
            self.dropped += 1
            LOG.warning("%s dropped: %d already pending", self._name, len(self._tasks))
            return None
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, job: Callable[[], Awaitable[object]]) -> None:
        async with self._slots:
            try:
                await job()
            except self._expected as error:
                self.failed += 1
                LOG.warning("%s failed: %s", self._name, getattr(error, "reason", error))
            except Exception:
                # Nobody awaits this task: an error must be counted and logged here, or it
                # would only surface as "exception never retrieved" at exit.
                self.failed += 1
                LOG.exception("%s failed", self._name)
            else:
                self.done += 1

    async def drain(self, timeout_s: float | None = None) -> None:
        """Waits for every pending job (or until timeout_s), those submitted meanwhile too."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._tasks:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                LOG.warning("shutdown with %d %s jobs still pending", len(self._tasks), self._name)
                return
            await asyncio.wait(set(self._tasks), timeout=left)

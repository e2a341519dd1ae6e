"""Follows the cache's change feed for the router's exact copies (exact_local.py).

One background task long-polls the cache (Changes): each answer lists the entries the cache
removed after the cursor, or says reset when it cannot (the cache restarted, another replica
answered, the cursor fell out of its log), and carries the ids the router served from its
copies since the previous poll. A poll that fails drops every copy and retries with backoff;
until one succeeds again, nothing is served from copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from services.router.exact_local import ExactCopies
from services.router.model import StageUnavailable

LOG = logging.getLogger(__name__)
# How long the cache holds a poll open when nothing changed; well under the feed's staleness
# bound, so an idle feed stays fresh.
WAIT_S = 1.0
RETRY_MIN_S = 0.1
RETRY_MAX_S = 5.0


@dataclass(frozen=True)
class ChangeBatch:
    epoch: str
    last: int
    reset: bool
    removed: tuple[str, ...] = ()


class ChangesPort(Protocol):
    async def changes(
        self, epoch: str, after: int, served: list[str], wait_s: float
    ) -> ChangeBatch:
        """One long poll; raises StageUnavailable when the cache cannot answer."""


class FeedFollower:
    """Keeps ExactCopies in step with the cache's removals."""

    def __init__(
        self,
        port: ChangesPort,
        copies: ExactCopies,
        wait_s: float = WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._port = port
        self._copies = copies
        self._wait_s = wait_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._epoch = ""
        self._after = 0

    def start(self) -> None:
        if self._task is None and self._copies.bounds.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="exact-feed")
            self._task.add_done_callback(_ended)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._copies.down()

    async def poll_once(self) -> None:
        """One poll and what follows from it; raises StageUnavailable (copies dropped)."""
        sent = self._clock()
        try:
            batch = await self._port.changes(
                self._epoch, self._after, self._copies.take_served(), self._wait_s
            )
        except StageUnavailable:
            self._copies.down()
            self._epoch, self._after = "", 0
            raise
        if batch.reset or batch.epoch != self._epoch:
            self._copies.reset()
        else:
            self._copies.removed(batch.removed)
        self._epoch, self._after = batch.epoch, batch.last
        self._copies.fresh(sent)

    async def _run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            try:
                await self.poll_once()
                delay = RETRY_MIN_S
            except StageUnavailable as error:
                LOG.warning("cache change feed: %s; exact copies off, retrying", error.reason)
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)


def _ended(task: asyncio.Task[None]) -> None:
    # Only a bug ends the loop early; the copies then go stale and are bypassed, which is safe,
    # but it must be seen.
    if not task.cancelled() and task.exception() is not None:
        LOG.error("cache change feed stopped; exact copies off", exc_info=task.exception())

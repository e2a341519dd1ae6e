"""The cache's change feed: which entries this replica removed, for routers' own exact copies.

A router may answer exact hits from copies of its own (services/router/exact_local.py). Every
entry this replica stops serving, whatever the reason (Invalidate of any target, a newer entry
under the same key, expiry, eviction, a wrong-hit report, or a removal another replica made in
a shared Redis store and this one applied), is appended here under a sequence number. Routers
long-poll for the ids after their cursor (the Changes RPC), so a removal reaches them as soon as
it happens, and a poll never holds a draining server for longer than its short wait.

The log keeps the last `capacity` removals. A cursor from another epoch (a restart, another
replica) or older than the log is answered with a reset: the caller drops every copy it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

# ~100 bytes an id in memory, so about 10 MB at most.
CAPACITY = 100_000
# A poll waits at most this long: the bound a draining server waits for one.
MAX_WAIT_S = 10.0


@dataclass(frozen=True)
class ChangesSince:
    """The answer to one poll."""

    epoch: str
    last: int
    reset: bool
    removed: tuple[str, ...] = ()


class ChangeLog:
    """Removed entry ids under increasing sequence numbers, with waiters for new ones."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.epoch = uuid.uuid4().hex
        self._ids: deque[str] = deque(maxlen=capacity)
        self._last = 0
        self._changed = asyncio.Event()

    @property
    def last(self) -> int:
        return self._last

    def removed(self, entry_ids: Iterable[str]) -> None:
        """Records removals; called synchronously wherever the cache drops an entry."""
        count = 0
        for entry_id in entry_ids:
            self._ids.append(entry_id)
            count += 1
        if count:
            self._last += count
            # Wakes every waiting poll at once; the next removal uses a fresh event.
            self._changed.set()
            self._changed = asyncio.Event()

    def since(self, epoch: str, after: int) -> ChangesSince:
        """The removals after `after`, or a reset when they are not all kept."""
        first_kept = self._last - len(self._ids)  # the sequence number before the oldest kept
        if epoch != self.epoch or after < first_kept or after > self._last:
            return ChangesSince(self.epoch, self._last, reset=True)
        count = self._last - after
        # Indexing a deque from its right end is cheap; the newest ids are there.
        removed = tuple(self._ids[index] for index in range(-count, 0))
        return ChangesSince(self.epoch, self._last, reset=False, removed=removed)

    async def wait(self, epoch: str, after: int, wait_s: float) -> ChangesSince:
        """Like `since`, but waits up to `wait_s` (capped at MAX_WAIT_S) for a removal when
        there is none yet."""
        found = self.since(epoch, after)
        if found.reset or found.removed or wait_s <= 0:
            return found
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), min(wait_s, MAX_WAIT_S))
        return self.since(epoch, after)

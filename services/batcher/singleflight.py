"""Singleflight: concurrent calls with the same key share one execution.

The shared execution runs as its own task, so a waiter that gives up (deadline, cancellation)
does not cancel the call for the others; only when every waiter has left is it cancelled, so no
upstream work is paid for that nobody will read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Flight(Generic[T]):
    task: asyncio.Task[T]
    # Callers still waiting, and callers that ever joined (reported as the group size).
    waiters: int = 0
    joined_total: int = 0


@dataclass(frozen=True)
class Shared(Generic[T]):
    """A result and how it was obtained."""

    value: T
    # True when this caller joined a flight another caller started.
    joined: bool
    # Callers that shared the flight, including this one, when this caller got its result.
    group_size: int


class Singleflight(Generic[T]):
    """Deduplicates concurrent executions by key."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight[T]] = {}

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    async def run(self, key: Hashable, execute: Callable[[], Awaitable[T]]) -> Shared[T]:
        """Returns execute()'s result, sharing it with concurrent callers of the same key."""
        flight = self._flights.get(key)
        joined = flight is not None
        if flight is None:
            flight = _Flight(asyncio.ensure_future(execute()))
            self._flights[key] = flight
            flight.task.add_done_callback(lambda _: self._forget(key, flight))
        flight.waiters += 1
        flight.joined_total += 1
        try:
            value = await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()
            raise
        flight.waiters -= 1
        return Shared(value, joined, flight.joined_total)

    def _forget(self, key: Hashable, flight: _Flight[T]) -> None:
        # A new flight may already own the key if this one was cancelled and replaced.
        if self._flights.get(key) is flight:
            del self._flights[key]

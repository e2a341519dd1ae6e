"""BodyLimit's one timer for every body being read (http_limits._Deadlines): each read still
times out on its own deadline, as it did under an asyncio.timeout of its own."""

from __future__ import annotations

import asyncio

import pytest

from services.router.http_limits import _Deadlines

TIMEOUT_S = 0.05


async def never() -> bytes:
    await asyncio.Event().wait()
    return b""


async def after(started: asyncio.Event, release: asyncio.Event) -> bytes:
    started.set()
    await release.wait()
    return b"body"


async def test_a_read_that_does_not_end_in_time_raises_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        await _Deadlines(TIMEOUT_S).run(never())


async def test_a_read_that_ends_in_time_gives_its_body_and_later_reads_still_time_out() -> None:
    deadlines = _Deadlines(TIMEOUT_S)
    assert await deadlines.run(asyncio.sleep(0, b"first")) == b"first"
    # The timer armed for the first read finds it gone and waits for the next one.
    with pytest.raises(TimeoutError):
        await deadlines.run(never())
    assert await deadlines.run(asyncio.sleep(0, b"again")) == b"again"


async def test_only_the_read_past_its_deadline_is_cancelled() -> None:
    deadlines = _Deadlines(TIMEOUT_S)
    started, release = asyncio.Event(), asyncio.Event()
    stuck = asyncio.create_task(deadlines.run(never()))
    finishing = asyncio.create_task(deadlines.run(after(started, release)))
    await started.wait()
    release.set()
    assert await finishing == b"body"
    with pytest.raises(TimeoutError):
        await stuck


async def test_a_cancelled_read_is_cancelled_not_timed_out() -> None:
    deadlines = _Deadlines(60.0)
    started, release = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(deadlines.run(after(started, release)))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_reads_on_a_new_loop_still_time_out() -> None:
    deadlines = _Deadlines(TIMEOUT_S)

    def on_another_loop() -> None:
        with pytest.raises(TimeoutError):
            asyncio.run(deadlines.run(never()))

    await asyncio.to_thread(on_another_loop)
    with pytest.raises(TimeoutError):
        await deadlines.run(never())

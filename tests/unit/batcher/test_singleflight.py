"""Singleflight: one execution per key among concurrent callers; cancellation is contained."""

import asyncio

import pytest

from services.batcher.singleflight import Singleflight


async def test_concurrent_identical_calls_share_one_execution() -> None:
    flights: Singleflight[str] = Singleflight()
    executions = 0
    release = asyncio.Event()

    async def execute() -> str:
        nonlocal executions
        executions += 1
        await release.wait()
        return "answer"

    waiters = [asyncio.create_task(flights.run("k", execute)) for _ in range(8)]
    await asyncio.sleep(0.01)
    release.set()
    results = await asyncio.gather(*waiters)
    assert executions == 1
    assert {r.value for r in results} == {"answer"}
    assert sum(not r.joined for r in results) == 1
    assert {r.group_size for r in results} == {8}
    assert flights.in_flight == 0


async def test_different_keys_do_not_share() -> None:
    flights: Singleflight[int] = Singleflight()

    async def execute(value: int) -> int:
        await asyncio.sleep(0.01)
        return value

    a, b = await asyncio.gather(
        flights.run("a", lambda: execute(1)), flights.run("b", lambda: execute(2))
    )
    assert (a.value, b.value, a.joined, b.joined) == (1, 2, False, False)


async def test_errors_reach_every_waiter_and_the_key_is_freed() -> None:
    flights: Singleflight[str] = Singleflight()

    async def fail() -> str:
        await asyncio.sleep(0.01)
        raise RuntimeError("upstream failed")

    results = await asyncio.gather(
        *(flights.run("k", fail) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert flights.in_flight == 0


async def test_one_waiter_cancelling_does_not_cancel_the_others() -> None:
    flights: Singleflight[str] = Singleflight()
    release = asyncio.Event()

    async def execute() -> str:
        await release.wait()
        return "done"

    leader = asyncio.create_task(flights.run("k", execute))
    follower = asyncio.create_task(flights.run("k", execute))
    await asyncio.sleep(0.01)
    leader.cancel()
    release.set()
    assert (await follower).value == "done"
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_last_waiter_leaving_cancels_the_execution() -> None:
    flights: Singleflight[str] = Singleflight()
    cancelled = asyncio.Event()

    async def execute() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    waiter = asyncio.create_task(flights.run("k", execute))
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.wait_for(cancelled.wait(), 1)

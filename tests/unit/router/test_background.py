"""The bounded runner of cache audits and hit reports: a concurrency limit, a bounded backlog,
drops and failures counted, and a drain at shutdown."""

import asyncio
import logging

import pytest

from services.router.background import BackgroundJobs


async def test_runs_at_most_concurrency_jobs_at_once_and_drops_beyond_the_backlog(
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = BackgroundJobs("cache audit", concurrency=2, backlog=1)
    release = asyncio.Event()
    running = 0
    peak = 0

    async def job() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    with caplog.at_level(logging.WARNING):
        accepted = [jobs.submit(job) for _ in range(5)]
    assert accepted == [True, True, True, False, False]
    assert (jobs.pending, jobs.dropped) == (3, 2)
    assert "cache audit dropped" in caplog.text
    await asyncio.sleep(0.01)
    assert peak == 2, "the third job waits for a slot"
    release.set()
    await jobs.drain()
    assert (jobs.pending, jobs.done, peak) == (0, 3, 2)


async def test_a_failing_job_is_counted_and_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = BackgroundJobs("cache hit report", concurrency=1, backlog=4)

    async def broken() -> None:
        raise RuntimeError("boom")

    async def fine() -> None:
        await asyncio.sleep(0)

    jobs.submit(broken)
    jobs.submit(fine)
    await jobs.drain()
    assert (jobs.failed, jobs.done) == (1, 1)
    assert "cache hit report failed" in caplog.text


async def test_drain_waits_for_jobs_submitted_while_draining() -> None:
    jobs = BackgroundJobs("cache audit", concurrency=1, backlog=4)
    finished: list[str] = []

    async def second() -> None:
        finished.append("second")

    async def first() -> None:
        await asyncio.sleep(0.01)
        jobs.submit(second)
        finished.append("first")

    jobs.submit(first)
    await jobs.drain()
    assert finished == ["first", "second"]


async def test_drain_gives_up_after_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    jobs = BackgroundJobs("cache audit", concurrency=1, backlog=0)
    release = asyncio.Event()
    jobs.submit(release.wait)
    await jobs.drain(timeout_s=0.05)
    assert jobs.pending == 1 and "still pending" in caplog.text
    release.set()
    await jobs.drain()
    assert jobs.pending == 0


def test_bounds_must_make_sense() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        BackgroundJobs("x", concurrency=0, backlog=1)

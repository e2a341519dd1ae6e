"""The job runner: a job reaches the provider once and completes, whatever crashes or errors
happen on the way; cancels before and after the provider has the batch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from services.batcher.job_runner import JobRunner, NoEndpoint, RunnerTiming
from services.batcher.jobs import ItemRequest, JobState
from services.batcher.provider_batches import EndpointTable, ProviderError
from services.batcher.store import SqliteJobStore, UnknownJob
from shared.chat import Role, Turn
from tests.unit.batcher.fakes import ENDPOINT, FakeProvider, Remote, price

ITEMS = [ItemRequest(f"q{n}", "gpt-4o", (Turn(Role.USER, f"question {n}"),)) for n in range(3)]
FAST = RunnerTiming(poll_interval_s=0.01, max_backoff_s=0.02)


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Polls a condition the runner's task will make true."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the runner exposes no event to wait on
            await asyncio.sleep(0.005)


def runner(tmp_path: Path, provider: FakeProvider) -> JobRunner:
    table = EndpointTable([ENDPOINT], "us-east")
    return JobRunner(SqliteJobStore(tmp_path), provider, table, price, FAST)


async def test_a_job_is_uploaded_created_polled_and_completed_once(tmp_path: Path):
    remote = Remote()
    jobs = runner(tmp_path, FakeProvider(remote, polls_to_finish=3))
    job, existing = jobs.submit("t", "r1", ITEMS)
    assert not existing and job.state is JobState.PENDING
    await jobs.settle(job.job_id)
    done = jobs.get("t", job.job_id)
    assert done.state is JobState.COMPLETED
    assert [r.content for r in done.results] == [f"re: question {n}" for n in range(3)]
    assert all(r.cost_nano_usd * 2 == r.interactive_cost_nano_usd for r in done.results)
    # A fresh job looks nothing up: it knows it has sent nothing yet.
    assert remote.calls == ["upload", "create", "get", "get", "get", "content"]


async def test_submitting_again_with_the_same_request_id_returns_the_same_job(tmp_path: Path):
    remote = Remote()
    jobs = runner(tmp_path, FakeProvider(remote))
    first, _ = jobs.submit("t", "r1", ITEMS)
    second, existing = jobs.submit("t", "r1", ITEMS)
    await jobs.settle(first.job_id)
    assert existing and second.job_id == first.job_id
    assert remote.count("create") == 1


@pytest.mark.parametrize(
    ("crash_after", "resumed_state"),
    [
        ("upload", JobState.UPLOADING),
        ("create", JobState.CREATING),
        ("get", JobState.SUBMITTED),
    ],
)
async def test_a_crash_at_any_step_resumes_without_losing_or_repeating_work(
    tmp_path: Path, crash_after: str, resumed_state: JobState
):
    remote = Remote()
    first_life = runner(tmp_path, FakeProvider(remote, crash_after=crash_after))
    job, _ = first_life.submit("t", "r1", ITEMS)
    await first_life.settle(job.job_id)
    assert SqliteJobStore(tmp_path).load(job.job_id).state is resumed_state

    second_life = runner(tmp_path, FakeProvider(remote))
    assert second_life.start() == 1
    await second_life.settle(job.job_id)
    done = second_life.get("t", job.job_id)
    assert done.state is JobState.COMPLETED and len(done.results) == 3
    assert remote.count("upload") == 1 and remote.count("create") == 1


async def test_a_retryable_error_that_hid_a_success_is_looked_up_not_repeated(tmp_path: Path):
    remote = Remote()
    provider = FakeProvider(remote)
    provider.fail_after["create"] = ProviderError("read timeout", retryable=True)
    jobs = runner(tmp_path, provider)
    job, _ = jobs.submit("t", "", ITEMS)
    await jobs.settle(job.job_id)
    assert jobs.get("t", job.job_id).state is JobState.COMPLETED
    assert remote.count("create") == 1 and remote.count("find_batch") == 1


async def test_a_permanent_provider_error_fails_the_job_with_a_reason_per_item(tmp_path: Path):
    provider = FakeProvider(Remote())
    provider.fail["upload"] = ProviderError("400 invalid file", retryable=False, status=400)
    jobs = runner(tmp_path, provider)
    job, _ = jobs.submit("t", "", ITEMS)
    await jobs.settle(job.job_id)
    failed = jobs.get("t", job.job_id)
    assert failed.state is JobState.FAILED and "invalid file" in failed.error
    assert [r.error for r in failed.results] == [failed.error] * 3


async def test_a_cancel_before_the_provider_has_the_job_sends_nothing(tmp_path: Path):
    remote = Remote()
    jobs = runner(tmp_path, FakeProvider(remote))
    job, _ = jobs.submit("t", "", ITEMS)
    jobs.cancel("t", job.job_id)
    await jobs.settle(job.job_id)
    assert jobs.get("t", job.job_id).state is JobState.CANCELLED
    assert remote.calls == []


async def test_a_cancel_after_creation_cancels_the_provider_batch(tmp_path: Path):
    remote = Remote()
    jobs = runner(tmp_path, FakeProvider(remote, polls_to_finish=10_000))
    job, _ = jobs.submit("t", "", ITEMS)
    await until(lambda: jobs.get("t", job.job_id).state is JobState.SUBMITTED)
    jobs.cancel("t", job.job_id)
    await jobs.settle(job.job_id)
    cancelled = jobs.get("t", job.job_id)
    assert cancelled.state is JobState.CANCELLED and remote.count("cancel") == 1
    assert all("cancelled before the provider ran it" in r.error for r in cancelled.results)


async def test_other_tenants_cannot_see_or_cancel_a_job(tmp_path: Path):
    jobs = runner(tmp_path, FakeProvider(Remote()))
    job, _ = jobs.submit("t", "", ITEMS)
    with pytest.raises(UnknownJob):
        jobs.get("intruder", job.job_id)
    with pytest.raises(UnknownJob):
        jobs.cancel("intruder", job.job_id)
    await jobs.settle(job.job_id)


def test_a_model_no_endpoint_serves_is_refused(tmp_path: Path):
    jobs = runner(tmp_path, FakeProvider(Remote()))
    with pytest.raises(NoEndpoint):
        jobs.submit("t", "", [ItemRequest("a", "unknown-model", (Turn(Role.USER, "x"),))])

"""The SQLite job store: round trips, idempotent submits, legal transitions, durability."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.batcher.jobs import IllegalTransition, ItemRequest, ItemResult, Job, JobState
from services.batcher.store import SqliteJobStore, UnknownJob
from shared.chat import Finish, Role, Turn
from shared.pricing import TokenUsage


def new_job(job_id: str = "job-1", request_id: str = "req-1", tenant: str = "t") -> Job:
    return Job(job_id, tenant, request_id, "gpt-4o", "sim-us-east", JobState.PENDING, 100.0)


ITEMS = [ItemRequest(f"i{n}", "gpt-4o", (Turn(Role.USER, f"question {n}"),)) for n in range(3)]


def test_a_job_and_its_lines_round_trip(tmp_path: Path):
    store = SqliteJobStore(tmp_path)
    stored, existing = store.insert(new_job(), ITEMS)
    assert not existing
    assert stored == store.load("job-1")
    assert (stored.state, stored.custom_ids, stored.results) == (
        JobState.PENDING,
        ("i0", "i1", "i2"),
        (),
    )
    assert [line.count('"custom_id"') for line in store.lines("job-1")] == [1, 1, 1]
    assert '"question 1"' in store.lines("job-1")[1]


def test_the_same_request_id_returns_the_existing_job(tmp_path: Path):
    store = SqliteJobStore(tmp_path)
    store.insert(new_job("job-1"), ITEMS)
    again, existing = store.insert(new_job("job-2"), ITEMS)
    assert existing and again.job_id == "job-1"
    other_tenant, existing = store.insert(new_job("job-3", tenant="u"), ITEMS)
    assert not existing and other_tenant.job_id == "job-3"
    no_id_a, _ = store.insert(new_job("job-4", request_id=""), ITEMS)
    no_id_b, _ = store.insert(new_job("job-5", request_id=""), ITEMS)
    assert no_id_a.job_id != no_id_b.job_id


def test_states_and_provider_ids_survive_reopening(tmp_path: Path):
    store = SqliteJobStore(tmp_path)
    store.insert(new_job(), ITEMS)
    store.advance("job-1", JobState.UPLOADING)
    store.advance("job-1", JobState.UPLOADED, file_id="file-9")
    store.request_cancel("job-1")
    store.close()
    reopened = SqliteJobStore(tmp_path)
    job = reopened.load("job-1")
    assert (job.state, job.file_id, job.cancel_requested) == (JobState.UPLOADED, "file-9", True)
    assert reopened.unfinished() == ["job-1"]


def test_results_are_written_with_the_terminal_state(tmp_path: Path):
    store = SqliteJobStore(tmp_path)
    store.insert(new_job(), ITEMS)
    for state in (JobState.UPLOADING, JobState.UPLOADED, JobState.CREATING):
        store.advance("job-1", state)
    store.advance("job-1", JobState.SUBMITTED, batch_id="batch-7")
    results = [
        ItemResult("i2", "c", Finish.STOP, "gpt-4o", TokenUsage(1, 2), 3, 6),
        ItemResult("i0", "a", Finish.STOP, "gpt-4o", TokenUsage(1, 2), 3, 6),
        ItemResult("i1", error="bad line"),
    ]
    done = store.finish("job-1", JobState.COMPLETED, results)
    assert done.state is JobState.COMPLETED and done.batch_id == "batch-7"
    assert [r.custom_id for r in done.results] == ["i0", "i1", "i2"]
    assert store.unfinished() == []


def test_an_illegal_transition_changes_nothing(tmp_path: Path):
    store = SqliteJobStore(tmp_path)
    store.insert(new_job(), ITEMS)
    with pytest.raises(IllegalTransition):
        store.finish("job-1", JobState.COMPLETED, [ItemResult("i0", error="x")])
    job = store.load("job-1")
    assert job.state is JobState.PENDING and job.results == ()


def test_unknown_jobs_raise(tmp_path: Path):
    store = SqliteJobStore(tmp_path)
    with pytest.raises(UnknownJob):
        store.load("nope")
    with pytest.raises(UnknownJob):
        store.request_cancel("nope")

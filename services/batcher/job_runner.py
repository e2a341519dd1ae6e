"""Drives Batch API jobs through their state machine (services/batcher/jobs.py), one task per
unfinished job. On start every unfinished job in the store is resumed.

"Resumed" matters for the two steps that talk to the provider without a stored result yet
(UPLOADING, CREATING): after a restart, or after an error that may have hidden a success (a
timeout once the request was sent), the runner first looks for the file or batch it may already
have made, and only sends again when there is none. A job is therefore never created twice at
the provider, and nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.batcher.jobs import (
    ItemRequest,
    ItemResult,
    Job,
    JobState,
    Price,
    results_for,
    validate_items,
)
from services.batcher.provider_batches import (
    BatchProvider,
    EndpointTable,
    ProviderBatch,
    ProviderError,
)
from services.batcher.store import JobStore, UnknownJob
from services.dispatcher.endpoints import Endpoint

LOG = logging.getLogger(__name__)
# Jobs that could not even reach their provider for this long are given up on (a provider's own
# completion window is 24 h; after that nobody is waiting for the answer any more).
GIVE_UP_S = 24 * 3600.0
_FIRST_BACKOFF_S = 0.2
_CANCELLED_EARLY = "cancelled before it reached the provider"


class NoEndpoint(ValueError):
    """No configured endpoint serves the job's model."""


@dataclass(frozen=True)
class RunnerTiming:
    poll_interval_s: float = 5.0
    max_backoff_s: float = 30.0


class JobRunner:
    """Accepts, resumes, cancels and finishes jobs; the only writer of job states."""

    def __init__(
        self,
        store: JobStore,
        provider: BatchProvider,
        endpoints: EndpointTable,
        price: Price,
        timing: RunnerTiming = RunnerTiming(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._provider = provider
        self._endpoints = endpoints
        self._price = price
        self._timing = timing
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}

    def start(self) -> int:
        """Resumes every unfinished job; returns how many."""
        unfinished = self._store.unfinished()
        for job_id in unfinished:
            self._spawn(job_id, resumed=True)
        return len(unfinished)

    async def settle(self, job_id: str) -> None:
        """Waits until the job's task has ended (finished, failed or crashed)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def submit(
        self, tenant: str, request_id: str, items: Sequence[ItemRequest], region: str = ""
    ) -> tuple[Job, bool]:
        """Stores a job durably and starts it; returns (job, existing)."""
        model = validate_items(items)
        endpoint = self._endpoints.choose(model, region)
        if endpoint is None:
            raise NoEndpoint(f"no configured endpoint serves {model!r}")
        job = Job(
            job_id=f"job-{uuid.uuid4().hex}",
            tenant=tenant,
            request_id=request_id,
            model=model,
            endpoint=endpoint.name,
            state=JobState.PENDING,
            created_at=self._clock(),
        )
        stored, existing = self._store.insert(job, items)
        if not stored.state.terminal and stored.job_id not in self._tasks:
            self._spawn(stored.job_id, resumed=existing)
        return stored, existing

    def get(self, tenant: str, job_id: str) -> Job:
        job = self._store.load(job_id)
        if job.tenant != tenant:
            raise UnknownJob(job_id)  # another tenant's job does not exist for this caller
        return job

    def cancel(self, tenant: str, job_id: str) -> Job:
        job = self.get(tenant, job_id)
        if job.state.terminal:
            return job
        job = self._store.request_cancel(job_id)
        if job_id in self._wake:
            self._wake[job_id].set()
        return job

    def _spawn(self, job_id: str, *, resumed: bool) -> None:
        self._wake[job_id] = asyncio.Event()
        task = asyncio.ensure_future(self._drive(job_id, resumed))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._forget(job_id))

    def _forget(self, job_id: str) -> None:
        self._tasks.pop(job_id, None)
        self._wake.pop(job_id, None)

    async def _drive(self, job_id: str, resumed: bool) -> None:
        backoff = _FIRST_BACKOFF_S
        while True:
            job = self._store.load(job_id)
            if job.state.terminal:
                return
            endpoint = self._endpoints.named(job.endpoint)
            if endpoint is None:
                self._end(job, JobState.FAILED, f"endpoint {job.endpoint!r} is not configured")
                return
            try:
                waiting = await self._step(job, endpoint, resumed)
            except ProviderError as error:
                if not error.retryable:
                    self._end(job, JobState.FAILED, str(error))
                    return
                LOG.warning("job %s: %s; retrying in %.1fs", job_id, error, backoff)
                resumed = True  # the failed call may still have taken effect
                await self._pause(job_id, backoff)
                backoff = min(backoff * 2, self._timing.max_backoff_s)
                continue
            backoff = _FIRST_BACKOFF_S
            if waiting:
                await self._pause(job_id, self._timing.poll_interval_s)

    async def _pause(self, job_id: str, seconds: float) -> None:
        """Sleeps, waking early when a cancel arrives."""
        wake = self._wake[job_id]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
        wake.clear()

    async def _step(self, job: Job, endpoint: Endpoint, resumed: bool) -> bool:
        """Takes one step; returns True when the job is waiting on the provider."""
        if not job.state.at_provider and job.state is not JobState.CREATING:
            if job.cancel_requested:
                self._end(job, JobState.CANCELLED, _CANCELLED_EARLY)
                return False
            if self._clock() - job.created_at > GIVE_UP_S:
                self._end(job, JobState.FAILED, "the provider could not be reached for 24 h")
                return False
        match job.state:
            case JobState.PENDING:
                self._store.advance(job.job_id, JobState.UPLOADING)
            case JobState.UPLOADING:
                await self._upload(job, endpoint, resumed)
            case JobState.UPLOADED:
                self._store.advance(job.job_id, JobState.CREATING)
            case JobState.CREATING:
                await self._create(job, endpoint, resumed)
            case JobState.SUBMITTED | JobState.CANCELLING:
                return await self._poll(job, endpoint)
        return False

    async def _upload(self, job: Job, endpoint: Endpoint, resumed: bool) -> None:
        file_id = await self._provider.find_file(endpoint, job.filename) if resumed else None
        if file_id is None:
            content = ("\n".join(self._store.lines(job.job_id)) + "\n").encode()
            file_id = await self._provider.upload(endpoint, job.filename, content)
        self._store.advance(job.job_id, JobState.UPLOADED, file_id=file_id)

    async def _create(self, job: Job, endpoint: Endpoint, resumed: bool) -> None:
        batch = None
        if resumed:
            batch = await self._provider.find_batch(endpoint, job.job_id, job.created_at)
        if batch is None:
            if job.cancel_requested:
                # Nothing was created (or found): the cancel can end the job here.
                self._end(job, JobState.CANCELLED, _CANCELLED_EARLY)
                return
            batch = await self._provider.create(endpoint, job.file_id, job.job_id)
        self._store.advance(job.job_id, JobState.SUBMITTED, batch_id=batch.id)

    async def _poll(self, job: Job, endpoint: Endpoint) -> bool:
        if job.cancel_requested and job.state is JobState.SUBMITTED:
            batch = await self._provider.cancel(endpoint, job.batch_id)
            self._store.advance(job.job_id, JobState.CANCELLING)
        else:
            batch = await self._provider.get(endpoint, job.batch_id)
        if not batch.finished:
            return True
        await self._finish(job, endpoint, batch)
        return False

    async def _finish(self, job: Job, endpoint: Endpoint, batch: ProviderBatch) -> None:
        files = [
            await self._provider.content(endpoint, file_id)
            for file_id in (batch.output_file_id, batch.error_file_id)
            if file_id
        ]
        if batch.status == "completed":
            results = results_for(job.custom_ids, files, endpoint.region, self._price)
            self._store.finish(job.job_id, JobState.COMPLETED, results)
        elif batch.status == "cancelled":
            missing = "cancelled before the provider ran it"
            results = results_for(job.custom_ids, files, endpoint.region, self._price, missing)
            self._store.finish(job.job_id, JobState.CANCELLED, results)
        else:
            why = "; ".join(batch.errors) or f"the provider's batch ended {batch.status}"
            results = results_for(job.custom_ids, files, endpoint.region, self._price, why)
            self._store.finish(job.job_id, JobState.FAILED, results, error=why)

    def _end(self, job: Job, state: JobState, why: str) -> None:
        """Ends a job that has no provider output: every item carries the reason."""
        results = [ItemResult(custom_id, error=why) for custom_id in job.custom_ids]
        self._store.finish(job.job_id, state, results, error=why)

"""Deferred work: requests that can wait, run as a provider Batch API job at the batch price.

Deferred requests skip the cache and the tier cascade: a gate cannot escalate an answer nobody
is waiting for, and a second batch round would double the wait. So every request of a job
goes to its model class's last, most capable tier, which the batch discount makes cheaper
than it is interactively. The tenant's budget still applies, as a request's does: the job's
worst case is held from submit (spending.JobSpending), so a tenant cannot submit jobs beyond
its budget; one that does not fit is refused or, when the policy downgrades instead, sent to
the cheapest tier. The hold is settled with the job's cost the first time any router replica
sees the job finished, and released at once when the batcher does not take the job.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from services.router.admission import (
    validate_response_format,
    validate_sampling,
    validate_turns,
)
from services.router.policy import Policy, TenantPolicy
from services.router.spending import JobHold, JobSpending, prompt_upper_bound
from shared.chat import Finish, ResponseFormat, Sampling, Turn
from shared.errors import InvalidRequest, NotFound, SluiceError, quoted
from shared.pricing import TokenUsage

# The provider Batch API's own limit on requests per batch.
MAX_REQUESTS = 50_000
MAX_CUSTOM_ID_CHARS = 64
# Router job ids are "dj_<routing key>_<batcher job id>": the key finds the batcher replica
# that holds the job again, whichever router replica is asked.
JOB_ID_PREFIX = "dj_"
ROUTING_KEY_HEX = 16
# A job's hold lasts the provider Batch API's completion window (the batcher asks for "24h"),
# plus an hour for the batcher's queue before it and the caller's first read after it. A job
# nobody reads again then lets go of the tenant's budget; it is still charged when read.
BATCH_COMPLETION_WINDOW_S = 24 * 3600
JOB_LEASE_S = BATCH_COMPLETION_WINDOW_S + 3600


@dataclass(frozen=True)
class DeferredItem:
    custom_id: str
    turns: tuple[Turn, ...]
    sampling: Sampling
    response_format: ResponseFormat


@dataclass(frozen=True)
class DeferredPlan:
    """A validated job: who submits it, which model answers, and the items with their ids."""

    tenant: TenantPolicy
    model: str
    tier: int
    max_tokens: int
    items: tuple[DeferredItem, ...]
    policy_version: str
    downgrade_reason: str


def _validated(index: int, item: DeferredItem, seen: set[str]) -> DeferredItem:
    try:
        validate_turns(item.turns)
        validate_sampling(item.sampling)
        validate_response_format(item.response_format)
    except SluiceError as error:
        raise InvalidRequest(f"requests[{index}]: {error}") from None
    custom_id = item.custom_id or f"item-{index}"
    if len(custom_id) > MAX_CUSTOM_ID_CHARS:
        raise InvalidRequest(
            f"requests[{index}].custom_id has {len(custom_id)} characters, "
            f"over the limit of {MAX_CUSTOM_ID_CHARS}"
        )
    if custom_id in seen:
        raise InvalidRequest(f"requests[{index}].custom_id {custom_id!r} is used twice")
    seen.add(custom_id)
    return DeferredItem(custom_id, item.turns, item.sampling, item.response_format)


def plan_deferred(
    policy: Policy,
    api_key: str,
    model_class: str,
    items: Sequence[DeferredItem],
    spending: JobSpending | None,
) -> DeferredPlan:
    """Authenticates, validates every item and picks the model; raises Unauthenticated,
    InvalidRequest or BudgetExhausted (for a spent budget), naming the problem."""
    tenant = policy.authenticate(api_key)
    chosen = tenant.model_class(model_class)
    if not items:
        raise InvalidRequest("requests is empty; send at least one")
    if len(items) > MAX_REQUESTS:
        raise InvalidRequest(f"{len(items)} requests, over the limit of {MAX_REQUESTS} per job")
    seen: set[str] = set()
    validated = tuple(_validated(index, item, seen) for index, item in enumerate(items))
    downgrade = "" if spending is None else spending.precheck(tenant) or ""
    tier = chosen.tiers[0] if downgrade else chosen.tiers[-1]
    return DeferredPlan(
        tenant=tenant,
        model=tier.model,
        tier=tier.index,
        max_tokens=chosen.max_tokens,
        items=validated,
        policy_version=policy.version,
        downgrade_reason=downgrade,
    )


def routing_key(tenant_id: str, request_id: str, nonce: str) -> str:
    """Which batcher replica takes a new job: the same for a retried Submit with the same
    request_id (so its idempotency holds), spread over replicas otherwise."""
    material = f"{tenant_id}\x00{request_id or nonce}".encode()
    return hashlib.sha256(material).hexdigest()[:ROUTING_KEY_HEX]


def router_job_id(key: str, batcher_job_id: str) -> str:
    return f"{JOB_ID_PREFIX}{key}_{batcher_job_id}"


def job_reservation_id(key: str) -> str:
    """The ledger id of a job's hold: known before the batcher names the job, and found again
    from the job id by any router replica."""
    return f"{JOB_ID_PREFIX}{key}"


def worst_calls(plan: DeferredPlan) -> list[TokenUsage]:
    """Each request's prompt (at most a token per UTF-8 byte) and output cap, as sent."""
    return [
        TokenUsage(prompt_upper_bound(item.turns), item.sampling.max_tokens or plan.max_tokens)
        for item in plan.items
    ]


def parse_job_id(job_id: str) -> tuple[str, str]:
    """(routing key, batcher job id) of a router job id; InvalidRequest if it is not one."""
    key, _, batcher_job_id = job_id.removeprefix(JOB_ID_PREFIX).partition("_")
    valid = (
        job_id.startswith(JOB_ID_PREFIX)
        and len(key) == ROUTING_KEY_HEX
        and all(c in "0123456789abcdef" for c in key)
        and batcher_job_id
    )
    if not valid:
        raise InvalidRequest(f"job_id {quoted(job_id)} is not a deferred job id (dj_<key>_<job>)")
    return key, batcher_job_id


class JobStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class DeferredAnswer:
    custom_id: str
    content: str
    finish: Finish
    usage: TokenUsage
    cost_nano_usd: int
    # Why this request has no answer; empty when it has one.
    error: str


@dataclass(frozen=True)
class JobReport:
    """A job as the batcher reports it."""

    batcher_job_id: str
    status: JobStatus
    model: str
    total: int
    completed: int
    failed: int
    answers: tuple[DeferredAnswer, ...]
    cost_nano_usd: int
    interactive_cost_nano_usd: int
    error: str = ""
    existing: bool = False


class BatchPort(Protocol):
    """The batcher's job RPCs, on the replica a routing key ranks first (or the next)."""

    async def submit(
        self, key: str, request_id: str, plan: DeferredPlan, deadline: float
    ) -> JobReport: ...

    async def get(self, key: str, tenant_id: str, job_id: str, deadline: float) -> JobReport: ...

    async def cancel(self, key: str, tenant_id: str, job_id: str, deadline: float) -> JobReport: ...


# Get or Cancel at the batcher: (routing key, tenant, batcher job id, deadline) -> the job.
JobOperation = Callable[[str, str, str, float], Awaitable[JobReport]]


@dataclass(frozen=True)
class Submitted:
    job_id: str
    report: JobReport
    plan: DeferredPlan


class DeferredWork:
    """Submit, Get and Cancel of deferred jobs for authenticated tenants; a job's worst case is
    held from submit and settled with its cost, once, when it is first seen finished."""

    def __init__(
        self,
        policy: Policy,
        batches: BatchPort,
        spending: JobSpending,
        lease_s: int = JOB_LEASE_S,
    ) -> None:
        self._policy = policy
        self._batches = batches
        self._spending = spending
        self._lease_s = lease_s

    async def submit(
        self,
        api_key: str,
        request_id: str,
        model_class: str,
        items: Sequence[DeferredItem],
        deadline: float,
    ) -> Submitted:
        plan = plan_deferred(self._policy, api_key, model_class, items, self._spending)
        key = routing_key(plan.tenant.tenant_id, request_id, uuid.uuid4().hex)
        plan, hold = await self._reserve(plan, model_class, job_reservation_id(key))
        try:
            report = await self._batches.submit(key, request_id, plan, deadline)
        except Exception:
            # The batcher refused the job or none could be reached: nothing runs on the hold.
            # (A cancelled submit keeps it until its lease: the batcher may have the job.)
            await self._spending.release(plan.tenant.tenant_id, job_reservation_id(key), hold)
            raise
        job_id = router_job_id(key, report.batcher_job_id)
        await self._settle(plan.tenant.tenant_id, key, job_id, report)
        return Submitted(job_id, report, plan)

    async def _reserve(
        self, plan: DeferredPlan, model_class: str, reservation_id: str
    ) -> tuple[DeferredPlan, JobHold]:
        """Holds the job's worst case; the plan comes back on the cheapest tier when the tenant
        downgrades for want of room."""
        chosen = plan.tenant.model_class(model_class)
        planned = next(tier for tier in chosen.tiers if tier.index == plan.tier)
        tiers = (planned, chosen.tiers[0])
        calls = worst_calls(plan)
        hold = await self._spending.reserve(
            plan.tenant, reservation_id, calls, tiers, lease_s=self._lease_s
        )
        if hold.tier is planned:
            return plan, hold
        downgraded = replace(
            plan,
            model=hold.tier.model,
            tier=hold.tier.index,
            downgrade_reason=hold.downgrade_reason,
        )
        return downgraded, hold

    async def get(self, api_key: str, job_id: str, deadline: float) -> JobReport:
        return await self._on_job(self._batches.get, api_key, job_id, deadline)

    async def cancel(self, api_key: str, job_id: str, deadline: float) -> JobReport:
        return await self._on_job(self._batches.cancel, api_key, job_id, deadline)

    async def _on_job(
        self, operation: JobOperation, api_key: str, job_id: str, deadline: float
    ) -> JobReport:
        tenant = self._policy.authenticate(api_key)
        key, batcher_job_id = parse_job_id(job_id)
        try:
            report = await operation(key, tenant.tenant_id, batcher_job_id, deadline)
        except NotFound:
            message = f"no deferred job {quoted(job_id)} for tenant {tenant.tenant_id!r}"
            raise NotFound(message) from None
        await self._settle(tenant.tenant_id, key, job_id, report)
        return report

    async def _settle(self, tenant_id: str, key: str, job_id: str, report: JobReport) -> None:
        # A finished job's cost no longer changes: every sighting settles, the first charges.
        if report.status.finished:
            reservation_id = job_reservation_id(key)
            await self._spending.settle(tenant_id, reservation_id, job_id, report.cost_nano_usd)

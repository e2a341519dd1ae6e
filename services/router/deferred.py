"""Deferred work: requests that can wait, run as a provider Batch API job at the batch price.

Deferred requests skip the cache and the tier cascade: a gate cannot escalate an answer nobody
is waiting for, and a second batch round would double the wait. So every request of a job
goes to its model class's last, most capable tier, which the batch discount makes cheaper
than it is interactively. The tenant's budget still applies: a spent budget refuses the job,
or, when the policy downgrades instead, sends it to the cheapest tier.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from services.router.admission import (
    validate_response_format,
    validate_sampling,
    validate_turns,
)
from services.router.budgets import BudgetLedger, JobLedger, check_budget
from services.router.policy import Policy, TenantPolicy
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
    ledger: BudgetLedger | None,
) -> DeferredPlan:
    """Authenticates, validates every item and picks the model; raises Unauthenticated,
    InvalidRequest or BudgetExhausted, naming the problem."""
    tenant = policy.authenticate(api_key)
    chosen = tenant.model_class(model_class)
    if not items:
        raise InvalidRequest("requests is empty; send at least one")
    if len(items) > MAX_REQUESTS:
        raise InvalidRequest(f"{len(items)} requests, over the limit of {MAX_REQUESTS} per job")
    seen: set[str] = set()
    validated = tuple(_validated(index, item, seen) for index, item in enumerate(items))
    downgrade = "" if ledger is None else check_budget(tenant, ledger) or ""
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
    """Submit, Get and Cancel of deferred jobs for authenticated tenants, and the charge of a
    finished job to the tenant's ledger, once."""

    def __init__(self, policy: Policy, batches: BatchPort, ledger: JobLedger | None) -> None:
        self._policy = policy
        self._batches = batches
        self._ledger = ledger

    async def submit(
        self,
        api_key: str,
        request_id: str,
        model_class: str,
        items: Sequence[DeferredItem],
        deadline: float,
    ) -> Submitted:
        plan = plan_deferred(self._policy, api_key, model_class, items, self._ledger)
        key = routing_key(plan.tenant.tenant_id, request_id, uuid.uuid4().hex)
        report = await self._batches.submit(key, request_id, plan, deadline)
        job_id = router_job_id(key, report.batcher_job_id)
        self._charge(plan.tenant.tenant_id, job_id, report)
        return Submitted(job_id, report, plan)

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
        self._charge(tenant.tenant_id, job_id, report)
        return report

    def _charge(self, tenant_id: str, job_id: str, report: JobReport) -> None:
        # A finished job's cost no longer changes, so it is charged the first time it is seen.
        if self._ledger is not None and report.status.finished and report.cost_nano_usd:
            self._ledger.charge_once(tenant_id, job_id, report.cost_nano_usd)

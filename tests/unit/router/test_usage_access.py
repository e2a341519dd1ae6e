"""Who reads which usage, and where the record is kept: the servicer and the settings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn

import grpc
import pytest
from sluice.router.v1 import spend_service_pb2 as pb

from services.router.budgets import InMemoryLedger
from services.router.config import Settings
from services.router.spend_servicer import SpendServicer
from services.router.usage import InMemoryUsage, UsageKey, UsageLog, UsageRow
from shared.settings import SettingsError
from tests.unit.router.fixtures import policy

TODAY = datetime.now(UTC).date().isoformat()


class _Aborted(Exception):
    pass


class _Context:
    def __init__(self, key: str) -> None:
        self._key = key
        self.code: grpc.StatusCode | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-api-key", self._key),)

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        self.code = code
        raise _Aborted(details)


def _servicer() -> SpendServicer:
    log = UsageLog(InMemoryUsage())
    for tenant, cost in (("acme", 5), ("other", 7)):
        log.record(UsageRow(UsageKey(TODAY, tenant, "chat", "c", 1, "cheap", "eu"), {"cost": cost}))
    return SpendServicer(policy(), InMemoryLedger(), log, frozenset({"acme"}))


async def _usage(key: str, **fields: Any) -> tuple[pb.GetUsageResponse | None, _Context]:
    context = _Context(key)
    try:
        response = await _servicer().GetUsage(pb.GetUsageRequest(**fields), context)  # type: ignore[arg-type]
    except _Aborted:
        return None, context
    return response, context


async def test_a_key_reads_its_own_tenant_and_an_admin_tenant_every_tenant() -> None:
    own, _ = await _usage("other-key")
    assert own is not None and [(r.tenant_id, r.cost_nano_usd) for r in own.records] == [
        ("other", 7)
    ]
    assert (own.first_day, own.last_day) == (TODAY, TODAY)
    every, _ = await _usage("acme-key", all_tenants=True)
    assert every is not None and sorted(r.tenant_id for r in every.records) == ["acme", "other"]


async def test_a_tenant_that_is_no_admin_is_denied_every_tenant() -> None:
    denied, context = await _usage("other-key", all_tenants=True)
    assert denied is None and context.code is grpc.StatusCode.PERMISSION_DENIED


async def test_a_bad_period_is_an_invalid_argument() -> None:
    _, context = await _usage("acme-key", first_day="yesterday")
    assert context.code is grpc.StatusCode.INVALID_ARGUMENT


def test_the_usage_store_follows_the_ledger_unless_named() -> None:
    assert Settings.from_env({}).usage_url == "memory://"
    redis = {"SLUICE_ROUTER_LEDGER": "redis://cache:6379/0"}
    assert Settings.from_env(redis).usage_url == "redis://cache:6379/0"
    sqlite = {"SLUICE_ROUTER_USAGE": "sqlite:///var/sluice/usage.sqlite3"}
    assert Settings.from_env(sqlite).usage_url == "sqlite:///var/sluice/usage.sqlite3"
    admins = {"SLUICE_ROUTER_USAGE_ADMIN_TENANTS": "ops, finance,"}
    assert Settings.from_env(admins).usage_admin_tenants == {"ops", "finance"}
    with pytest.raises(SettingsError, match=r"SLUICE_ROUTER_USAGE='usage\.db' must be memory://"):
        Settings.from_env({"SLUICE_ROUTER_USAGE": "usage.db"})

"""The usage record: periods, the buffered log, and the rows Spending writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from services.router.model import Outcome, RouteResult, StageLine, StageName
from services.router.spending import Reservation, Spending
from services.router.usage import (
    InMemoryUsage,
    Period,
    UsageKey,
    UsageLog,
    UsageRow,
    parse_period,
)
from services.router.usage_rows import answered_row
from shared.chat import Finish
from shared.errors import InvalidRequest
from shared.pricing import TokenUsage
from tests.unit.router.fixtures import admit_acme, catalogue, policy_doc

DAY = date(2026, 3, 14)


def _result(lines: tuple[StageLine, ...], *, hit: bool = False, tier: int = 2) -> RouteResult:
    return RouteResult(
        request_id="r1",
        content="answer",
        finish=Finish.STOP,
        model="mid",
        tier=0 if hit else tier,
        region="" if hit else "eu",
        usage=TokenUsage(100, 10),
        lines=lines,
        baseline_model="top",
        baseline_cost_nano_usd=1_300_000,
        cache_hit=hit,
        policy_version="test-1",
    )


def _line(stage: StageName, cost: int, outcome: Outcome = Outcome.PASSED) -> StageLine:
    return StageLine(stage, outcome, cost_nano_usd=cost)


def test_a_period_defaults_to_today_and_names_a_bad_day() -> None:
    assert parse_period("", "", DAY) == Period(DAY, DAY)
    assert parse_period("2026-03-01", "", DAY) == Period(date(2026, 3, 1), DAY)
    with pytest.raises(InvalidRequest, match="first_day '03/01/2026' is not a day as YYYY-MM-DD"):
        parse_period("03/01/2026", "", DAY)
    with pytest.raises(InvalidRequest, match="first_day 2026-03-15 is after last_day 2026-03-14"):
        parse_period("2026-03-15", "", DAY)
    with pytest.raises(InvalidRequest, match="longer than 366 days"):
        parse_period("2024-01-01", "2026-01-01", DAY)


def test_a_tier_answer_splits_cost_by_stage_and_savings_between_compressor_and_cascade() -> None:
    request = replace(admit_acme(policy_doc(), "hello"), prompt_tokens=1_100)
    lines = (
        _line(StageName.CACHE, 0),
        _line(StageName.COMPRESSOR, 5_000, Outcome.USED),
        _line(StageName.TIER, 20_000, Outcome.REJECTED),
        _line(StageName.TIER, 120_000),
    )
    row = answered_row(DAY, request, _result(lines), catalogue())
    assert row.key == UsageKey(
        "2026-03-14", "acme", "chat", "chat/text/no-tools/max_tokens unset", 2, "mid", "eu"
    )
    assert row.stage_costs == {"compressor": 5_000, "tier": 140_000}
    # 1,000 prompt tokens removed at mid's $1/M input: 1,000,000 nano-USD, less the summary.
    assert row.stage_savings["compressor"] == 1_000_000 - 5_000
    saved = 1_300_000 - 145_000
    assert row.stage_savings == {"compressor": 995_000, "cascade": saved - 995_000}
    assert row.counters["requests"] == 1 and row.counters["cost"] == 145_000


def test_a_cache_hit_saves_its_whole_baseline_for_the_cache() -> None:
    request = admit_acme(policy_doc(), "hello")
    hit = _result((_line(StageName.CACHE, 0, Outcome.USED),), hit=True)
    row = answered_row(DAY, request, hit, catalogue())
    assert (row.key.tier, row.key.model, row.key.region) == (0, "mid", "")
    assert row.counters["cache_hits"] == 1
    assert row.stage_savings == {"cache": 1_300_000}


def test_a_discarded_summary_is_a_negative_saving_of_the_compressor() -> None:
    request = replace(admit_acme(policy_doc(), "hello"), prompt_tokens=1_100)
    lines = (_line(StageName.COMPRESSOR, 5_000, Outcome.NOT_APPLICABLE), _line(StageName.TIER, 7))
    row = answered_row(DAY, request, _result(lines), catalogue())
    assert row.stage_savings["compressor"] == -5_000


def _usage(at: datetime) -> tuple[UsageLog, InMemoryUsage]:
    backend = InMemoryUsage()
    return UsageLog(backend, clock=lambda: at), backend


async def test_spending_writes_one_row_per_settled_request_and_per_cache_hit() -> None:
    log, _ = _usage(datetime(2026, 3, 14, 23, 59, tzinfo=UTC))
    spending = Spending(None, catalogue(), log)
    request = admit_acme(policy_doc(), "hello")
    answered = _result((_line(StageName.TIER, 120_000),))
    reservation = Reservation(request, "", 0, held=False)
    await spending.settle(reservation, 120_000, answered)
    await spending.settle(reservation, 120_000, answered)  # a second settle is a no-op
    spending.served_from_cache(request, _result((), hit=True))
    await spending.settle(Reservation(request, "", 0, held=False), 9_000)  # no tier answered
    audit = Reservation(request, "", 0, held=False, counts_as_request=False)
    await spending.settle(audit, 4_000)
    rows = await log.read(Period(DAY, DAY), None)
    total = sum((r.counters.get("cost", 0) for r in rows), 0)
    assert total == 120_000 + 9_000 + 4_000
    assert sum(r.counters.get("requests", 0) for r in rows) == 3
    assert sum(r.counters.get("cache_hits", 0) for r in rows) == 1
    none_tier = next(r for r in rows if r.key.tier == 0 and not r.key.model)
    assert none_tier.stage_costs == {"cache_audit": 4_000, "unanswered": 9_000}
    assert none_tier.stage_savings == {"cache": -4_000, "cascade": -9_000}


async def test_reads_filter_by_period_and_tenant_and_aggregate_per_key() -> None:
    log, backend = _usage(datetime(2026, 3, 14, tzinfo=UTC))
    key = UsageKey("2026-03-13", "acme", "chat", "c", 1, "cheap", "eu")
    for row in (
        UsageRow(key, {"cost": 5, "requests": 1}),
        UsageRow(key, {"cost": 7, "requests": 1}),
        UsageRow(replace(key, day="2026-03-14"), {"cost": 11}),
        UsageRow(replace(key, tenant="other"), {"cost": 13}),
    ):
        log.record(row)
    assert backend.cells == {}, "recording does no I/O; a read flushes first"
    rows = await log.read(Period(date(2026, 3, 13), date(2026, 3, 13)), frozenset({"acme"}))
    assert rows == [UsageRow(key, {"cost": 12, "requests": 2})]
    everyone = await log.read(Period(date(2026, 3, 1), date(2026, 3, 14)), None)
    assert [(r.key.day, r.key.tenant) for r in everyone] == [
        ("2026-03-13", "acme"),
        ("2026-03-13", "other"),
        ("2026-03-14", "acme"),
    ]


class _Failing(InMemoryUsage):
    fail = True

    async def add(self, cells: Mapping[UsageKey, Mapping[str, int]]) -> None:
        if self.fail:
            raise ConnectionError("backend down")
        await super().add(cells)


async def test_a_failed_flush_keeps_the_counters_for_the_next() -> None:
    backend = _Failing()
    log = UsageLog(backend, clock=lambda: datetime(2026, 3, 14, tzinfo=UTC))
    key = UsageKey("2026-03-14", "acme", "chat", "c", 1, "cheap", "eu")
    log.record(UsageRow(key, {"cost": 5}))
    with pytest.raises(ConnectionError):
        await log.flush()
    log.record(UsageRow(key, {"cost": 6}))
    backend.fail = False
    assert await log.read(Period(DAY, DAY), None) == [UsageRow(key, {"cost": 11})]


async def test_the_in_memory_record_forgets_days_older_than_it_keeps() -> None:
    backend = InMemoryUsage(keep_days=3)

    def cell(day: str) -> dict[UsageKey, dict[str, int]]:
        return {UsageKey(day, "acme", "chat", "c", 1, "cheap", "eu"): {"cost": 1}}

    for day in ("2026-03-10", "2026-03-11", "2026-03-12", "2026-03-13"):
        await backend.add(cell(day))
    assert sorted({key.day for key in backend.cells}) == ["2026-03-11", "2026-03-12", "2026-03-13"]
    # A late write for a day still kept lands; an older day's does not bring the old days back.
    await backend.add(cell("2026-03-11"))
    assert backend.cells[next(iter(cell("2026-03-11")))]["cost"] == 2
    assert len(backend.cells) == 3
    await backend.add(cell("2026-03-09"))  # older than what is kept: not kept either
    assert len(backend.cells) == 3

"""`sluice report`: cost and savings for a period, read from the router's usage record.

It asks the router (SpendService.GetUsage, with the tenant's API key, like `sluice ask`) for the
period's records, one per UTC day and per tenant, model class, request class, tier, model and
region, and adds them up by each of those dimensions. It prints a table, `--json` prints the
same figures for scripts, and `--html FILE` writes one self-contained page (report_html.py).

A key sees its own tenant's usage; `--all-tenants` reads every tenant's, for a tenant the
router lists in SLUICE_ROUTER_USAGE_ADMIN_TENANTS (`sluice up` lists `dev`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from sluice.router.v1 import spend_service_pb2 as pb
from sluice.router.v1 import spend_service_pb2_grpc as pb_grpc

from shared.cli.ask import usd

# The dimensions a report adds up by, with their headings.
DIMENSIONS = {
    "tenant": "tenant",
    "model_class": "model class",
    "tier": "tier",
    "model": "model",
    "region": "region",
    "request_class": "request class",
}
TOP_CLASSES = 10


@dataclass
class Figures:
    """Money and requests of a set of records, in nano-USD."""

    requests: int = 0
    cache_hits: int = 0
    cost: int = 0
    baseline: int = 0

    def add(self, record: pb.UsageRecord) -> None:
        self.requests += record.requests
        self.cache_hits += record.cache_hits
        self.cost += record.cost_nano_usd
        self.baseline += record.baseline_cost_nano_usd

    @property
    def saved(self) -> int:
        return self.baseline - self.cost

    def as_json(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "cost_nano_usd": self.cost,
            "baseline_cost_nano_usd": self.baseline,
            "saved_nano_usd": self.saved,
        }


def dimension_value(record: pb.UsageRecord, dimension: str) -> str:
    if dimension == "tier":
        return str(record.tier) if record.tier else "0 (cache or none)"
    value = getattr(record, "tenant_id" if dimension == "tenant" else dimension)
    return str(value) or "-"


@dataclass
class UsageReport:
    first_day: str
    last_day: str
    totals: Figures = field(default_factory=Figures)
    # Every day of the period, those without requests included, in order.
    daily: dict[str, Figures] = field(default_factory=dict)
    by: dict[str, dict[str, Figures]] = field(default_factory=dict)
    stage_costs: Counter[str] = field(default_factory=Counter)
    stage_savings: Counter[str] = field(default_factory=Counter)

    def ranked(self, dimension: str) -> list[tuple[str, Figures]]:
        """The dimension's values, dearest first."""
        return sorted(self.by[dimension].items(), key=lambda item: (-item[1].cost, item[0]))

    def as_json(self) -> dict[str, Any]:
        return {
            "first_day": self.first_day,
            "last_day": self.last_day,
            "totals": self.totals.as_json(),
            "daily": [{"day": day, **f.as_json()} for day, f in self.daily.items()],
            "by": {
                dim: [{dim: value, **f.as_json()} for value, f in self.ranked(dim)]
                for dim in DIMENSIONS
            },
            "stage_costs_nano_usd": dict(sorted(self.stage_costs.items())),
            "stage_savings_nano_usd": dict(sorted(self.stage_savings.items())),
            "top_request_classes": [
                {"request_class": value, **f.as_json()}
                for value, f in self.ranked("request_class")[:TOP_CLASSES]
            ],
        }


def period_days(first_day: str, last_day: str) -> list[str]:
    first, last = date.fromisoformat(first_day), date.fromisoformat(last_day)
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def build_report(response: pb.GetUsageResponse) -> UsageReport:
    """Adds the router's records up by day, by each dimension and by stage."""
    report = UsageReport(response.first_day, response.last_day)
    report.daily = {day: Figures() for day in period_days(response.first_day, response.last_day)}
    report.by = {dimension: {} for dimension in DIMENSIONS}
    for record in response.records:
        report.totals.add(record)
        report.daily.setdefault(record.day, Figures()).add(record)
        for dimension, groups in report.by.items():
            groups.setdefault(dimension_value(record, dimension), Figures()).add(record)
        report.stage_costs.update({a.stage: a.nano_usd for a in record.stage_costs})
        report.stage_savings.update({a.stage: a.nano_usd for a in record.stage_savings})
    return report


def _share(saved: int, baseline: int) -> str:
    return f"{saved / baseline:.1%}" if baseline else "-"


def _table(heading: str, rows: list[tuple[str, Figures]]) -> list[str]:
    width = max([len(heading), *(len(name) for name, _ in rows)]) + 2
    lines = [
        f"{heading:<{width}}{'requests':>9}{'hits':>6}{'cost (USD)':>16}{'baseline (USD)':>16}"
        f"{'saved (USD)':>16}{'saved':>8}"
    ]
    for name, f in rows:
        lines.append(
            f"{name:<{width}}{f.requests:>9}{f.cache_hits:>6}{usd(f.cost):>16}"
            f"{usd(f.baseline):>16}{usd(f.saved):>16}{_share(f.saved, f.baseline):>8}"
        )
    return lines


def _stages(heading: str, amounts: Counter[str]) -> list[str]:
    return [heading, *(f"  {stage:<14}{usd(n):>16}" for stage, n in sorted(amounts.items()))]


def render_table(report: UsageReport) -> str:
    t = report.totals
    lines = [
        f"Sluice usage {report.first_day} .. {report.last_day} (UTC)",
        f"{t.requests} requests ({t.cache_hits} from the cache): cost {usd(t.cost)}, baseline "
        f"{usd(t.baseline)}, saved {usd(t.saved)} ({_share(t.saved, t.baseline)})",
        "",
        *_table("day", list(report.daily.items())),
    ]
    for dimension, heading in DIMENSIONS.items():
        lines += ["", *_table(heading, report.ranked(dimension))]
    lines += ["", *_stages("cost by stage", report.stage_costs)]
    lines += ["", *_stages("savings by stage", report.stage_savings)]
    return "\n".join(lines)


def _period(args: argparse.Namespace) -> tuple[str, str]:
    """The days asked for: --from/--to, or the last --days days up to today (UTC)."""
    if args.first_day or args.last_day:
        return args.first_day, args.last_day
    today = datetime.now(UTC).date()
    return (today - timedelta(days=args.days - 1)).isoformat(), today.isoformat()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--router", default=os.environ.get("SLUICE_ROUTER_ADDR", "127.0.0.1:50051"))
    parser.add_argument("--api-key", default=os.environ.get("SLUICE_API_KEY", "dev"))
    parser.add_argument("--from", dest="first_day", default="", help="first UTC day, YYYY-MM-DD")
    parser.add_argument("--to", dest="last_day", default="", help="last UTC day (default: today)")
    parser.add_argument(
        "--days", type=_positive, default=7, help="without --from/--to: the last N days (7)"
    )
    parser.add_argument(
        "--all-tenants", action="store_true", help="every tenant (an admin tenant's key only)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--html", type=Path, help="also write a self-contained HTML page here")
    parser.add_argument("--timeout", type=float, default=30.0)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def fetch_usage(args: argparse.Namespace) -> pb.GetUsageResponse:
    first_day, last_day = _period(args)
    request = pb.GetUsageRequest(
        first_day=first_day, last_day=last_day, all_tenants=args.all_tenants
    )
    with grpc.insecure_channel(args.router) as channel:
        stub = pb_grpc.SpendServiceStub(channel)
        response: pb.GetUsageResponse = stub.GetUsage(
            request, metadata=(("x-api-key", args.api_key),), timeout=args.timeout
        )
        return response


def run_report(args: argparse.Namespace) -> int:
    try:
        report = build_report(fetch_usage(args))
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    if args.html is not None:
        from shared.cli.report_html import render_html

        args.html.write_text(render_html(report), encoding="utf-8")
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(render_table(report))
        if args.html is not None:
            print(f"\nwrote {args.html}")
    return 0

"""`sluice report`: the records added up by day, dimension and stage; table, JSON and HTML."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from sluice.router.v1 import spend_service_pb2 as pb

from shared.cli.main import _parser
from shared.cli.report import build_report, render_table
from shared.cli.report_html import render_html


def _record(
    day: str, tenant: str, tier: int, model: str, cost: int, baseline: int, **kw: object
) -> pb.UsageRecord:
    return pb.UsageRecord(
        day=day,
        tenant_id=tenant,
        model_class=str(kw.get("model_class", "chat")),
        request_class=str(kw.get("request_class", "chat/text/no-tools/max_tokens unset")),
        tier=tier,
        model=model,
        region=str(kw.get("region", "eu" if tier else "")),
        requests=int(kw.get("requests", 1)),  # type: ignore[call-overload]
        cache_hits=0 if tier else 1,
        cost_nano_usd=cost,
        baseline_cost_nano_usd=baseline,
        stage_costs=[pb.StageAmount(stage="tier", nano_usd=cost)] if cost else [],
        stage_savings=[
            pb.StageAmount(stage="cascade" if tier else "cache", nano_usd=baseline - cost)
        ],
    )


RESPONSE = pb.GetUsageResponse(
    first_day="2026-03-12",
    last_day="2026-03-15",
    records=[
        _record("2026-03-12", "acme", 1, "cheap", 100, 1_000),
        _record("2026-03-12", "acme", 0, "cheap", 0, 1_000),
        _record("2026-03-14", "acme", 3, "top", 2_000, 1_500, region="us", requests=2),
        _record("2026-03-14", "beta", 1, "cheap", 50, 900, model_class="code", request_class="k"),
    ],
)


def test_records_add_up_by_each_dimension() -> None:
    report = build_report(RESPONSE)
    totals = report.totals
    assert (totals.requests, totals.cache_hits, totals.cost, totals.baseline) == (
        5,
        1,
        2_150,
        4_400,
    )
    by = {
        dim: {k: (f.requests, f.cost) for k, f in groups.items()}
        for dim, groups in report.by.items()
    }
    assert by["tenant"] == {"acme": (4, 2_100), "beta": (1, 50)}
    assert by["model_class"] == {"chat": (4, 2_100), "code": (1, 50)}
    assert by["tier"] == {"1": (2, 150), "0 (cache or none)": (1, 0), "3": (2, 2_000)}
    assert by["model"] == {"cheap": (3, 150), "top": (2, 2_000)}
    assert by["region"] == {"eu": (2, 150), "-": (1, 0), "us": (2, 2_000)}
    assert by["request_class"]["k"] == (1, 50)


def test_every_day_of_the_period_is_a_row_and_stages_sum_to_the_whole() -> None:
    report = build_report(RESPONSE)
    assert {d: f.cost for d, f in report.daily.items()} == {
        "2026-03-12": 100,
        "2026-03-13": 0,
        "2026-03-14": 2_050,
        "2026-03-15": 0,
    }
    assert report.stage_costs == {"tier": 2_150}
    assert report.stage_savings == {"cache": 1_000, "cascade": 900 - 500 + 850}
    assert sum(report.stage_savings.values()) == report.totals.saved


def test_json_and_table_carry_the_same_figures() -> None:
    report = build_report(RESPONSE)
    document = json.loads(json.dumps(report.as_json()))
    assert document["totals"]["cost_nano_usd"] == 2_150
    assert document["totals"]["saved_nano_usd"] == 2_250
    assert [c["request_class"] for c in document["top_request_classes"]] == [
        "chat/text/no-tools/max_tokens unset",
        "k",
    ]
    assert len(document["daily"]) == 4
    table = render_table(report)
    assert "5 requests (1 from the cache): cost $0.000002150" in table
    assert re.search(r"^beta\s+1\s+0\s+\$0\.000000050", table, re.MULTILINE)


class _Bars(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.bars: dict[str, list[tuple[str, int, float]]] = {}
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "rect":
            day, nano = found["data-day"] or "", int(found["data-nano-usd"] or 0)
            self.bars.setdefault(found["class"] or "", []).append(
                (day, nano, float(found["height"] or 0))
            )
        for name in ("src", "href"):
            if found.get(name):
                self.external.append(f"{tag} {name}={found[name]}")
        if tag in ("script", "link", "img", "iframe"):
            self.external.append(tag)


def test_the_html_page_draws_one_bar_pair_per_day_and_fetches_nothing() -> None:
    page = render_html(build_report(RESPONSE))
    parser = _Bars()
    parser.feed(page)
    cost, baseline = parser.bars["cost-bar"], parser.bars["baseline-bar"]
    assert [day for day, _, _ in cost] == ["2026-03-12", "2026-03-13", "2026-03-14", "2026-03-15"]
    assert sum(n for _, n, _ in cost) == 2_150 and sum(n for _, n, _ in baseline) == 4_400
    # One scale: the dearest bar (the 14th's baseline) is the tallest; an empty day has none.
    cost_height = {day: h for day, _, h in cost}
    baseline_height = {day: h for day, _, h in baseline}
    assert cost_height["2026-03-13"] == 0 == baseline_height["2026-03-13"]
    assert baseline_height["2026-03-14"] == max(h for _, _, h in baseline + cost)
    ratio = cost_height["2026-03-14"] / baseline_height["2026-03-14"]
    assert abs(ratio - 2_050 / 2_400) < 0.01
    assert parser.external == []
    assert 'id="stage-savings"' in page and "cascade" in page
    assert "Top 10 request classes by cost" in page


def test_the_command_line_names_a_bad_day_count() -> None:
    args = _parser().parse_args(["report", "--json", "--days", "3"])
    assert (args.command, args.json, args.days) == ("report", True, 3)
    try:
        _parser().parse_args(["report", "--days", "0"])
    except SystemExit as exit_:
        assert exit_.code == 2
    else:
        raise AssertionError("--days 0 was accepted")

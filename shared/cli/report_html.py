"""`sluice report --html`: one self-contained page, no scripts, fonts or images fetched.

The daily chart is inline SVG drawn here: per day, a grey bar for what the baseline model would
have charged and a blue bar for what the requests cost, on one scale. Each bar carries its day
and amount (`data-day`, `data-nano-usd`) so tests and scripts can read the chart back.
"""

from __future__ import annotations

from collections import Counter
from html import escape

from shared.cli.ask import usd
from shared.cli.report import DIMENSIONS, TOP_CLASSES, Figures, UsageReport

CHART_WIDTH = 760
CHART_HEIGHT = 260
# Room for the amount labels on the left and the day labels below the bars.
LEFT, BOTTOM, TOP = 90, 40, 16
COST_COLOUR = "#2b6cb0"
BASELINE_COLOUR = "#a0aec0"
_STYLE = f"""
body {{ font-family: sans-serif; margin: 2em; color: #1a202c; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ padding: 0.2em 0.8em; text-align: right; border-bottom: 1px solid #e2e8f0; }}
th:first-child, td:first-child {{ text-align: left; }}
.legend span {{ display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.3em 0 1em; }}
.cost {{ background: {COST_COLOUR}; }} .baseline {{ background: {BASELINE_COLOUR}; }}
.meter {{ display: inline-block; height: 0.8em; background: #38a169; }}
.meter.negative {{ background: #e53e3e; }}
"""


def _bar(css: str, x: float, width: float, height: float, day: str, nano: int) -> str:
    colour = COST_COLOUR if css == "cost-bar" else BASELINE_COLOUR
    y = TOP + (CHART_HEIGHT - TOP - BOTTOM) - height
    return (
        f'<rect class="{css}" data-day="{day}" data-nano-usd="{nano}" x="{x:.1f}" y="{y:.1f}" '
        f'width="{width:.1f}" height="{height:.1f}" fill="{colour}"><title>{day}: '
        f"{escape(usd(nano))}</title></rect>"
    )


def daily_chart(daily: dict[str, Figures]) -> str:
    """Cost against the baseline per day, as SVG bars on one scale."""
    plot_height = CHART_HEIGHT - TOP - BOTTOM
    top = max([1, *(max(f.cost, f.baseline) for f in daily.values())])
    slot = (CHART_WIDTH - LEFT - 10) / max(1, len(daily))
    bar = max(1.0, slot * 0.38)
    # Day labels thin out so they never overlap: about one per 60 pixels.
    label_every = max(1, round(60 / slot))
    parts = [
        f'<svg id="daily-chart" xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" '
        f'height="{CHART_HEIGHT}" role="img" aria-label="daily cost against the baseline">',
        f'<line x1="{LEFT}" y1="{TOP + plot_height}" x2="{CHART_WIDTH - 10}" '
        f'y2="{TOP + plot_height}" stroke="#4a5568"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end" font-size="11">'
        f"{escape(usd(top))}</text>",
        f'<text x="{LEFT - 6}" y="{TOP + plot_height}" text-anchor="end" font-size="11">$0</text>',
    ]
    for n, (day, figures) in enumerate(daily.items()):
        x = LEFT + n * slot + slot * 0.1
        parts.append(
            _bar(
                "baseline-bar", x, bar, plot_height * figures.baseline / top, day, figures.baseline
            )
        )
        parts.append(
            _bar("cost-bar", x + bar, bar, plot_height * figures.cost / top, day, figures.cost)
        )
        if n % label_every == 0:
            parts.append(
                f'<text x="{x + bar:.1f}" y="{TOP + plot_height + 16}" text-anchor="middle" '
                f'font-size="11">{day[5:]}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _figures_table(heading: str, rows: list[tuple[str, Figures]]) -> str:
    head = (
        f"<tr><th>{escape(heading)}</th><th>requests</th><th>cache hits</th><th>cost</th>"
        "<th>baseline</th><th>saved</th></tr>"
    )
    body = "".join(
        f"<tr><td>{escape(name)}</td><td>{f.requests}</td><td>{f.cache_hits}</td>"
        f"<td>{usd(f.cost)}</td><td>{usd(f.baseline)}</td><td>{usd(f.saved)}</td></tr>"
        for name, f in rows
    )
    return f"<table>{head}{body}</table>"


def _stage_table(css_id: str, amounts: Counter[str]) -> str:
    largest = max([1, *(abs(n) for n in amounts.values())])
    rows = "".join(
        f'<tr><td>{escape(stage)}</td><td>{usd(n)}</td><td><span class="meter'
        f'{" negative" if n < 0 else ""}" style="width:{200 * abs(n) / largest:.0f}px">'
        "</span></td></tr>"
        for stage, n in sorted(amounts.items(), key=lambda item: -item[1])
    )
    return f'<table id="{css_id}"><tr><th>stage</th><th>amount</th><th></th></tr>{rows}</table>'


def render_html(report: UsageReport) -> str:
    t = report.totals
    share = f" ({t.saved / t.baseline:.1%})" if t.baseline else ""
    sections = [
        f"<h1>Sluice usage {report.first_day} .. {report.last_day} (UTC)</h1>",
        f'<p id="totals">{t.requests} requests ({t.cache_hits} from the cache): cost '
        f"<b>{usd(t.cost)}</b>, baseline {usd(t.baseline)}, saved <b>{usd(t.saved)}</b>{share}</p>",
        "<h2>Daily cost against the baseline</h2>",
        '<p class="legend"><span class="baseline"></span>baseline<span class="cost"></span>cost'
        "</p>",
        daily_chart(report.daily),
        "<h2>Savings by stage</h2>",
        _stage_table("stage-savings", report.stage_savings),
        "<h2>Cost by stage</h2>",
        _stage_table("stage-costs", report.stage_costs),
        f"<h2>Top {TOP_CLASSES} request classes by cost</h2>",
        _figures_table("request class", report.ranked("request_class")[:TOP_CLASSES]),
    ]
    for dimension, heading in DIMENSIONS.items():
        if dimension != "request_class":
            sections += [
                f"<h2>By {heading}</h2>",
                _figures_table(heading, report.ranked(dimension)),
            ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Sluice usage {report.first_day} .. {report.last_day}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(sections)}</body></html>\n"
    )

"""Tables and the machine-readable summary of the routing benchmark.

Every row says where it comes from: OFFLINE rows replay recorded answers in Python, MESH rows
were answered by the running services. Ratios are against always calling the strong model
(GPT-4) on the same prompts, offline, since both kinds of row see the same recorded costs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.router.learning.evaluate import OVERALL, BySplit, OfflineReport

TARGET_COST_RATIO = 0.15
SLUICE = "Sluice learned cascade @budget"
# (source, policy name, results per split)
Row = tuple[str, str, BySplit]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _policy_rows(rows: Sequence[Row], split: str, reference: BySplit) -> list[list[str]]:
    ref = reference[split]
    return [
        [
            source,
            name,
            f"{r[split].accuracy:.3f}",
            f"{r[split].accuracy - ref.accuracy:+.3f}",
            f"${r[split].cost_per_1k:.3f}",
            f"{r[split].cost_per_1k / ref.cost_per_1k:.1%}",
            f"{r[split].strong_fraction:.1%}",
        ]
        for source, name, r in rows
    ]


def _curve(points: Sequence[tuple[str, BySplit]], splits: Sequence[str], ref: BySplit) -> str:
    cells = [
        [
            label,
            *(f"{r[s].accuracy:.3f} / {r[s].cost_per_1k / ref[s].cost_per_1k:.0%}" for s in splits),
        ]
        for label, r in points
    ]
    return markdown_table(["", *(f"{s}: acc / cost" for s in splits)], cells)


def format_report(report: OfflineReport, mesh_rows: Sequence[Row], splits: Sequence[str]) -> str:
    reference = report.rows[0].results
    rows: list[Row] = [("OFFLINE", r.name, r.results) for r in report.rows]
    rows += list(mesh_rows)
    every = [*splits, OVERALL]
    headers = ["source", "policy", "accuracy", "vs GPT-4", "cost/1k q", "cost vs GPT-4", "GPT-4"]
    out: list[str] = []
    for split in every:
        out.append(
            f"\n### {split}: n={reference[split].n}; target accuracy >= GPT-4 at <= "
            f"{TARGET_COST_RATIO:.0%} of its cost\n"
        )
        out.append(markdown_table(headers, _policy_rows(rows, split, reference)))
    out.append("\n### OFFLINE curve on test: one shared threshold t on every cheap tier\n")
    out.append(_curve([(f"t={t:.2f}", r) for t, r in report.sweep], every, reference))
    out.append("\n### OFFLINE on test: thresholds fitted on train for each cost budget\n")
    out.append(_curve([(f"budget {f:.1%}", r) for f, r in report.frontier], every, reference))
    out.append("\n### APGR of the t-curve (RouteLLM): weak = first tier alone, strong = GPT-4\n")
    out.append(
        markdown_table(
            ["split", "x = share of GPT-4 calls", "x = cost / GPT-4 cost"],
            [[s, f"{report.apgr_calls[s]:.3f}", f"{report.apgr_cost[s]:.3f}"] for s in every],
        )
    )
    out.append(
        "\n### OFFLINE scorer AUC on test, each tier's answers seen after the tiers before\n"
    )
    out.append(
        markdown_table(
            ["tier / split", "AUC"], [[k, f"{v:.3f}"] for k, v in report.scorer_auc.items()]
        )
    )
    return "\n".join(out)


def verdict(results: BySplit, reference: BySplit) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split, r in results.items():
        ref = reference[split]
        ratio = r.cost_per_1k / ref.cost_per_1k
        out[split] = {
            "n": r.n,
            "accuracy": round(r.accuracy, 4),
            "cost_per_1k_usd": round(r.cost_per_1k, 4),
            "accuracy_vs_gpt4": round(r.accuracy - ref.accuracy, 4),
            "cost_ratio_vs_gpt4": round(ratio, 4),
            "target_met": r.accuracy >= ref.accuracy and ratio <= TARGET_COST_RATIO,
        }
    return out


def summary(
    report: OfflineReport, mesh_rows: Sequence[Row], mesh_info: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The JSON line: Sluice's learned cascade from the mesh when it ran there, else offline."""
    reference = report.rows[0].results
    source, results = "offline-simulation", next(r for r in report.rows if r.name == SLUICE).results
    for row_source, name, row in mesh_rows:
        if name == SLUICE:
            source, results = row_source.lower(), row
    scores = verdict(results, reference)
    return {
        "benchmark": "routing",
        "source": source,
        "policy": SLUICE,
        "accuracy_vs_gpt4": scores[OVERALL]["accuracy_vs_gpt4"],
        "cost_ratio_vs_gpt4": scores[OVERALL]["cost_ratio_vs_gpt4"],
        "target_met": scores[OVERALL]["target_met"],
        "splits": {s: v for s, v in scores.items() if s != OVERALL},
        "apgr": {"x_gpt4_calls": report.apgr_calls, "x_cost": report.apgr_cost},
        "offline": {r.name: verdict(r.results, reference)[OVERALL] for r in report.rows},
        "mesh": None
        if mesh_info is None
        else {
            **mesh_info,
            "rows": {name: verdict(r, reference) for _, name, r in mesh_rows},
        },
    }

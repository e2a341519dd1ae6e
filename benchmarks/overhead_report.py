"""The overhead benchmark's table and JSON summary, from its runs."""

from __future__ import annotations

import argparse
import math
import os
import platform
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.common import markdown_table
from benchmarks.overhead_load import RunResult

Results = Mapping[tuple[str, str, int], RunResult]
# Issue #18's targets on a 2-core machine.
EXACT_HIT_P99_TARGET_MS = 5.0
SEMANTIC_HIT_P99_TARGET_MS = 50.0
MISS_P50_C1_TARGET_MS = 8.0
MESH_RSS_TARGET_MB = 700.0
# Which LiteLLM proxy a path is compared with.
LITELLM_FOR = {"miss": "litellm", "exact": "litellm-cache"}
TARGETS = ("direct", "litellm", "litellm-cache", "sluice-http", "sluice-grpc")


def upstream_s(results: Results) -> float:
    """The upstream's own time: the median of the direct calls at concurrency 1."""
    direct = results.get(("miss", "direct", 1))
    return direct.percentile_ms(50) / 1000 if direct is not None else 0.0


def added_ms(results: Results, path: str, target: str, c: int, q: float) -> float | None:
    run = results.get((path, target, c))
    if run is None or not run.latencies_s:
        return None
    # Nothing goes upstream on a hit, so its whole latency is the gateway's.
    minus = upstream_s(results) if path.startswith("miss") and target != "direct" else 0.0
    return run.percentile_ms(q, minus)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0 or math.isnan(a) or math.isnan(b):
        return None
    return round(a / b, 3)


def _cell(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _row(results: Results, path: str, target: str, c: int) -> list[str] | None:
    run = results.get((path, target, c))
    if run is None:
        return None
    p50, p99 = added_ms(results, path, target, c, 50), added_ms(results, path, target, c, 99)
    versus = LITELLM_FOR.get(path)
    p99_ratio = rps_ratio = None
    if target.startswith("sluice") and versus is not None:
        p99_ratio = ratio(p99, added_ms(results, path, versus, c, 99))
        other = results.get((path, versus, c))
        rps_ratio = ratio(run.rps, other.rps if other is not None else None)
    return [
        path, str(c), target, _cell(p50), _cell(p99), f"{run.rps:.0f}",
        _cell(p99_ratio, 3), _cell(rps_ratio, 3), str(run.errors), str(run.upstream_calls),
    ]  # fmt: skip


def report(results: Results, levels: Sequence[int]) -> str:
    """The Markdown table: one row per path, concurrency and target."""
    headers = (
        "path", "c", "target", "added p50 ms", "added p99 ms", "req/s",
        "p99 ratio vs LiteLLM", "req/s ratio vs LiteLLM", "errors", "upstream calls",
    )  # fmt: skip
    rows = [
        row
        for path in ("miss", "exact", "semantic")
        for c in levels
        for target in TARGETS
        if (row := _row(results, path, target, c)) is not None
    ]
    note = (
        f"Upstream time (direct, c=1, p50): {upstream_s(results) * 1000:.2f} ms, subtracted "
        "from every miss-path latency; hits are reported whole."
    )
    return markdown_table(headers, rows) + "\n\n" + note


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def miss_ratios(results: Results, path: str, c: int) -> tuple[float | None, float | None]:
    """(p99 added latency, requests per second) of Sluice's HTTP door over LiteLLM's."""
    mine, theirs = results.get((path, "sluice-http", c)), results.get((path, "litellm", c))
    p99 = ratio(
        added_ms(results, path, "sluice-http", c, 99), added_ms(results, path, "litellm", c, 99)
    )
    rps = ratio(mine.rps if mine else None, theirs.rps if theirs else None)
    return p99, rps


def _worst(values: Sequence[float | None], higher_is_worse: bool) -> float | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return max(known) if higher_is_worse else min(known)


def summary(
    results: Results,
    levels: Sequence[int],
    conditions: dict[str, Any],
    passes: int = 0,
    mesh_rss_mb: float | None = None,
) -> dict[str, Any]:
    """The final JSON line: the issue's figures, the ratios, and which targets are met. With
    passes, the miss path's ratios are the worse of its passes ("miss/0", "miss/1", ...),
    each pass's also given; without, those of all its runs together."""
    out: dict[str, Any] = {"upstream_ms": round(upstream_s(results) * 1000, 3)}
    for c in levels:
        sluice = added_ms(results, "miss", "sluice-http", c, 99)
        litellm = added_ms(results, "miss", "litellm", c, 99)
        mine, theirs = results.get(("miss", "sluice-http", c)), results.get(("miss", "litellm", c))
        out[f"miss_p50_ms_c{c}"] = _rounded(added_ms(results, "miss", "sluice-http", c, 50))
        out[f"miss_p99_ms_c{c}"] = _rounded(sluice)
        out[f"litellm_miss_p99_ms_c{c}"] = _rounded(litellm)
        by_pass = [miss_ratios(results, f"miss/{n}", c) for n in range(passes)]
        if passes:
            out[f"p99_ratios_by_pass_c{c}"] = [p99 for p99, _ in by_pass]
            out[f"rps_ratios_by_pass_c{c}"] = [rps for _, rps in by_pass]
        else:
            by_pass = [miss_ratios(results, "miss", c)]
        out[f"p99_ratio_vs_litellm_c{c}"] = _worst([p99 for p99, _ in by_pass], True)
        out[f"rps_c{c}"] = round(mine.rps, 1) if mine else None
        out[f"litellm_rps_c{c}"] = round(theirs.rps, 1) if theirs else None
        out[f"rps_ratio_vs_litellm_c{c}"] = _worst([rps for _, rps in by_pass], False)
        out[f"grpc_miss_p99_ms_c{c}"] = _rounded(added_ms(results, "miss", "sluice-grpc", c, 99))
        for path in ("exact", "semantic"):
            out[f"{path}_hit_p99_ms_c{c}"] = _rounded(added_ms(results, path, "sluice-http", c, 99))
        out[f"litellm_exact_hit_p99_ms_c{c}"] = _rounded(
            added_ms(results, "exact", "litellm-cache", c, 99)
        )
    out["mesh_rss_mb"] = mesh_rss_mb
    # A pass's runs are in its path's runs as well ("miss/0" in "miss"): counted once.
    out["errors"] = sum(run.errors for (path, _, _), run in results.items() if "/" not in path)
    out["targets_met"] = targets_met(out)
    out["conditions"] = conditions
    return out


def targets_met(out: Mapping[str, Any]) -> dict[str, bool | None]:
    def at_most(key: str, bound: float) -> bool | None:
        value = out.get(key)
        return None if value is None else bool(value <= bound)

    def at_least(key: str, bound: float) -> bool | None:
        value = out.get(key)
        return None if value is None else bool(value >= bound)

    return {
        "miss_p50_le_8ms_c1": at_most("miss_p50_ms_c1", MISS_P50_C1_TARGET_MS),
        "miss_p99_le_litellm_c1": at_most("p99_ratio_vs_litellm_c1", 1.0),
        "miss_p99_le_litellm_c16": at_most("p99_ratio_vs_litellm_c16", 1.0),
        "miss_p99_le_litellm_c64": at_most("p99_ratio_vs_litellm_c64", 1.0),
        "exact_hit_p99_le_5ms_c16": at_most("exact_hit_p99_ms_c16", EXACT_HIT_P99_TARGET_MS),
        "semantic_hit_p99_le_50ms_c16": at_most(
            "semantic_hit_p99_ms_c16", SEMANTIC_HIT_P99_TARGET_MS
        ),
        "mesh_rss_le_700mb": at_most("mesh_rss_mb", MESH_RSS_TARGET_MB),
        "miss_rps_ge_litellm_c1": at_least("rps_ratio_vs_litellm_c1", 1.0),
        "miss_rps_ge_litellm_c16": at_least("rps_ratio_vs_litellm_c16", 1.0),
        "miss_rps_ge_litellm_c64": at_least("rps_ratio_vs_litellm_c64", 1.0),
    }


def run_conditions(args: argparse.Namespace) -> dict[str, Any]:
    """What the figures depend on: cores, load, run size."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_before": os.getloadavg(),
        "requests_per_run": args.requests,
        "levels": args.levels,
        "traces_exported": bool(args.traces),
    }

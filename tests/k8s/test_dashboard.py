"""The Grafana dashboard in k8s/grafana asks only for metrics the services export: every PromQL
query's metric names are among the series the services' registries define."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry

from services.batcher.metrics import BatcherMetrics
from services.cache.metrics import CacheMetrics
from services.dispatcher.metrics import DispatcherMetrics
from services.router.metrics import RouterMetrics
from shared.metrics import GrpcServerMetrics
from tests.k8s.manifests import ROOT

DASHBOARD = ROOT / "k8s" / "grafana" / "sluice-dashboard.json"
# The sample names each metric type is exposed under (the text format's suffixes).
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_KEYWORDS |= {"and", "or", "unless", "inf", "nan"}


def exported() -> set[str]:
    """Every sample name the services' registries can expose."""
    registry = CollectorRegistry()
    GrpcServerMetrics(registry)
    for metrics in (RouterMetrics, DispatcherMetrics, BatcherMetrics, CacheMetrics):
        metrics(registry)
    return {
        family.name + suffix for family in registry.collect() for suffix in _SUFFIXES[family.type]
    }


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: identifiers that are not functions,
    aggregations, keywords, label names in matchers or grouping clauses, nor durations."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word, rest = match.group(), expr[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def test_the_query_parser_finds_metric_names_only() -> None:
    expr = (
        'sum by (tier) (rate(a_total{served_by="cache"}[5m])) / ignoring(result) group_left '
        "histogram_quantile(0.99, sum by (le) (rate(b_bucket[1m]))) - c"
    )
    assert metric_names(expr) == {"a_total", "b_bucket", "c"}


def test_every_dashboard_query_names_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = exported()
    found = list(queries(dashboard))
    assert found, "the dashboard has no queries"
    for title, expr in found:
        names = metric_names(expr)
        assert names, (title, expr)
        assert names <= known, (title, sorted(names - known))


def test_the_dashboard_has_the_panels_operators_ask_for() -> None:
    titles = " | ".join(
        panel["title"].lower() for panel in json.loads(DASHBOARD.read_text())["panels"]
    )
    for wanted in ("cost and savings by tier", "p50", "p99", "cache hit rate", "escalation"):
        assert wanted in titles, wanted

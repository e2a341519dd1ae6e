"""The deadline benchmark's figures: retention, latency, partial and failed calls per budget."""

from __future__ import annotations

from benchmarks.compression_deadline import figures


def test_figures_per_budget() -> None:
    outcomes = {
        0.0: [
            {"ok": True, "failed": "", "partial": False, "latency_s": 9.0, "ratio": 4.0},
            {"ok": True, "failed": "", "partial": False, "latency_s": 3.0, "ratio": 4.2},
        ],
        5.0: [
            {"ok": True, "failed": "", "partial": True, "latency_s": 4.5, "ratio": 4.1},
            {"ok": False, "failed": "StatusCode.DEADLINE_EXCEEDED", "latency_s": 5.0},
        ],
    }

    result = figures(outcomes)

    unlimited, five = result["budgets"]["none"], result["budgets"]["5s"]
    assert unlimited == {
        "questions": 2,
        "retention_at_4x": 1.0,
        "latency_p50_s": 6.0,
        "latency_max_s": 9.0,
        "partial": 0,
        "failed": 0,
        "median_compression": 4.1,
    }
    assert five["retention_at_4x"] == 0.5
    assert five["partial"] == 1
    assert five["failed"] == 1
    assert five["median_compression"] == 4.1

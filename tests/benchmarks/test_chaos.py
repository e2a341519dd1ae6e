"""The chaos benchmark's pure parts: the unanswered gap, RSS ratios, outcome kinds, JSON line."""

from __future__ import annotations

import json

import pytest

from benchmarks.chaos import Outcome, Tally, classify_http, growth_ratios, longest_gap, summary


def test_longest_gap_counts_the_edges_of_the_run() -> None:
    assert longest_gap([2.0, 3.0, 9.5], start=0.0, end=10.0) == pytest.approx(6.5)
    assert longest_gap([1.0, 2.0], start=0.0, end=10.0) == pytest.approx(8.0)  # the tail
    assert longest_gap([], start=0.0, end=4.0) == pytest.approx(4.0)
    # Answers that land after the end (requests still finishing) do not shorten a gap.
    assert longest_gap([1.0, 12.0], start=0.0, end=10.0) == pytest.approx(9.0)


def test_growth_ratios_skip_processes_measured_only_once() -> None:
    ratios = growth_ratios({"router": 100, "cache": 200, "gone": 50}, {"router": 150, "cache": 100})
    assert ratios == {"router": 1.5, "cache": 0.5}


def test_an_http_error_is_a_clear_failure_only_in_openai_shape() -> None:
    error = json.dumps({"error": {"message": "upstream down", "type": "x", "param": None}})
    assert classify_http(0.0, 503, error.encode()).kind == "failed"
    assert classify_http(0.0, 200, b'{"choices": [{"message": {}}]}').kind == "answered"
    assert classify_http(0.0, 500, b"Internal Server Error").kind == "lost"
    assert classify_http(0.0, 502, b'{"detail": "no"}').kind == "lost"


def test_summary_is_one_json_line_with_the_promised_fields() -> None:
    tally = Tally(
        outcomes=[
            Outcome(0.0, 1.0, "answered"),
            Outcome(0.5, 2.0, "failed", "grpc UNAVAILABLE"),
            Outcome(1.0, 7.0, "answered"),
            Outcome(1.5, 45.0, "lost", "grpc hang past the deadline"),
        ],
        kills=[(3.0, "router")],
    )

    figures = summary(tally, start=0.0, end=10.0, ratios={"router": 1.25, "cache": 0.9})

    line = json.loads(json.dumps(figures))
    assert line["sent"] == 4 and line["answered"] == 2 and line["failed"] == 1
    assert line["failed_by_status"] == {"grpc UNAVAILABLE": 1}
    assert line["lost"] == 1 and line["lost_by_reason"] == {"grpc hang past the deadline": 1}
    assert line["unanswered_gap_s_max"] == 6.0
    assert line["rss_growth_ratio_max"] == 1.25
    assert line["kills"] == 1

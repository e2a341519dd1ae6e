"""The soak benchmark's own bookkeeping: what counts as lost, and what counts as growth."""

from __future__ import annotations

import pytest

from benchmarks.load import Tally
from benchmarks.load_probe import MachineProbe


def test_a_status_without_a_known_code_or_message_is_lost() -> None:
    tally = Tally()
    tally.status("RESOURCE_EXHAUSTED", "daily budget of $1.00 is spent")
    tally.status("UNKNOWN", "Exception iterating responses")
    tally.status("UNAVAILABLE", "  ")
    tally.answer(120, cache_hit=False, latency_s=0.05)
    tally.answer(0, cache_hit=True, latency_s=0.01)
    assert tally.statuses == {"RESOURCE_EXHAUSTED": 1}
    assert len(tally.lost) == 2
    assert (tally.answered, tally.cache_hits, tally.charged, tally.cost_nano_usd) == (2, 1, 1, 120)
    assert tally.settled == 5


@pytest.mark.parametrize(
    ("series", "bounded"),
    [
        ([100.0, 140.0, 150.0, 152.0, 153.0], True),  # grows while warming, then settles
        ([100.0, 150.0, 200.0, 250.0, 300.0], False),  # keeps climbing: a leak
        ([400.0, 400.0, 410.0, 440.0, 470.0], True),  # within 15% of its mid-run size
    ],
)
def test_rss_counts_as_unbounded_only_when_it_keeps_climbing(
    series: list[float], bounded: bool
) -> None:
    probe = MachineProbe({})
    for mib in series:
        probe.record("cache", mib)
    assert probe.rss_bounded() is bounded
    assert probe.rss_summary()["cache"] == (series[0], series[len(series) // 2], series[-1])

"""Sliding-window percentiles, EWMA and consecutive-failure ejection."""

from services.dispatcher.health import Ejection
from services.dispatcher.latency import LatencyTracker


def test_percentiles_are_nearest_rank() -> None:
    tracker = LatencyTracker(window=1000)
    for ms in range(1, 101):
        tracker.record(ms / 1000)
    p = tracker.percentiles()
    assert p is not None
    assert (p.p50, p.p95, p.p99, p.samples) == (0.05, 0.095, 0.099, 100)
    assert tracker.percentile(100) == 0.1


def test_window_forgets_old_samples() -> None:
    tracker = LatencyTracker(window=16)
    for _ in range(16):
        tracker.record(5.0)
    for _ in range(16):
        tracker.record(0.01)
    assert tracker.percentile(99) == 0.01


def test_ewma_moves_toward_recent_samples() -> None:
    tracker = LatencyTracker(alpha=0.5)
    assert tracker.ewma is None and tracker.percentiles() is None
    tracker.record(1.0)
    tracker.record(0.0)
    assert tracker.ewma == 0.5


def test_ejection_backs_off_exponentially_and_resets() -> None:
    now = [0.0]
    ejection = Ejection(threshold=2, base_s=1.0, clock=lambda: now[0])
    ejection.record_failure()
    assert not ejection.ejected
    ejection.record_failure()
    assert ejection.ejected and ejection.ejected_until == 1.0
    now[0] = 1.5
    assert not ejection.ejected  # half-open: tried again
    ejection.record_failure()
    ejection.record_failure()
    assert ejection.ejected_until == 1.5 + 2.0
    ejection.record_success()
    assert not ejection.ejected and ejection.ejections == 0


def test_samples_age_out() -> None:
    now = [0.0]
    tracker = LatencyTracker(window=100, max_age_s=10, clock=lambda: now[0])
    tracker.record(5.0)
    now[0] = 8.0
    tracker.record(0.1)
    assert tracker.samples == 2 and tracker.percentile(99) == 5.0
    now[0] = 11.0
    assert tracker.samples == 1 and tracker.percentile(99) == 0.1


def test_mean_excess_says_how_much_longer_slow_calls_took() -> None:
    tracker = LatencyTracker()
    for seconds in (0.05, 0.06, 0.07, 0.5, 0.7):
        tracker.record(seconds)
    excess, count = tracker.mean_excess(0.1)
    assert count == 2 and excess is not None and abs(excess - 0.5) < 1e-9
    assert tracker.mean_excess(1.0) == (None, 0)

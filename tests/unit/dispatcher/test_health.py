"""Outlier ejection with half-open probes, Retry-After holds, concurrency and RPM limits."""

from services.dispatcher.health import CallLimits, Ejection, RateLimitHold


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_half_open_admits_exactly_one_probe() -> None:
    clock = Clock()
    ejection = Ejection(threshold=2, base_s=1.0, clock=clock)
    ejection.record_failure()
    assert ejection.admits()
    ejection.record_failure()
    assert not ejection.admits() and ejection.ejected
    clock.now += 1.0
    assert ejection.half_open and ejection.admits()
    assert ejection.start() is True  # this call is the probe
    assert not ejection.admits(), "others wait for the probe's verdict"
    ejection.record_success()
    assert ejection.admits() and not ejection.half_open and ejection.ejections == 0
    assert ejection.start() is False


def test_a_failed_probe_doubles_the_ejection() -> None:
    clock = Clock()
    ejection = Ejection(threshold=1, base_s=1.0, clock=clock, max_s=3.0)
    ejection.record_failure()
    assert ejection.ejected_until == 101.0
    for expected in (2.0, 3.0, 3.0):  # doubling, capped at max_s
        clock.now = ejection.ejected_until
        assert ejection.start()
        ejection.record_failure()
        assert ejection.ejected_until == clock.now + expected


def test_an_abandoned_probe_lets_the_next_call_probe() -> None:
    clock = Clock()
    ejection = Ejection(threshold=1, base_s=1.0, clock=clock)
    ejection.record_failure()
    clock.now += 1.0
    assert ejection.start()
    ejection.abandon_probe()
    assert ejection.admits() and ejection.start()


def test_retry_after_hold() -> None:
    clock = Clock()
    hold = RateLimitHold(clock)
    assert not hold.held
    hold.hold(2.0)
    hold.hold(1.0)  # a shorter hold never shortens a longer one
    assert hold.held and hold.remaining_s == 2.0
    clock.now += 2.0
    assert not hold.held and hold.remaining_s == 0.0


def test_concurrency_limit() -> None:
    limits = CallLimits(max_concurrency=2, rpm=0)
    limits.acquire()
    assert limits.has_room()
    limits.acquire()
    assert not limits.has_room() and limits.wait_hint_s() is None
    limits.release()
    assert limits.has_room()


def test_rpm_limit_is_a_sliding_minute() -> None:
    clock = Clock()
    limits = CallLimits(max_concurrency=0, rpm=2, clock=clock)
    limits.acquire()
    clock.now += 10
    limits.acquire()
    limits.release()
    limits.release()
    assert not limits.has_room() and limits.wait_hint_s() == 50.0
    clock.now += 50
    assert limits.has_room() and limits.wait_hint_s() is None

"""Retry and hedge budgets over a sliding window, and full-jitter back-off."""

import random

from services.dispatcher.budgets import BudgetPolicy, Budgets, SlidingCounter, backoff_s


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sliding_counter_forgets_old_seconds() -> None:
    clock = Clock()
    counter = SlidingCounter(window_s=10, clock=clock)
    counter.add()
    clock.now += 5
    counter.add(2)
    assert counter.total() == 3
    clock.now += 5.5
    assert counter.total() == 2
    clock.now += 10
    assert counter.total() == 0


def test_retries_are_a_share_of_requests() -> None:
    clock = Clock()
    budgets = Budgets(BudgetPolicy(retry_ratio=0.2, min_retry_concurrency=0), clock)
    for _ in range(10):
        budgets.record_request()
    assert budgets.try_retry() and budgets.try_retry()
    assert not budgets.try_retry(), "2 retries for 10 requests is the 20% budget"
    clock.now += 11  # the window moves on
    for _ in range(5):
        budgets.record_request()
    assert budgets.try_retry() and not budgets.try_retry()


def test_min_retry_concurrency_allows_retries_in_flight_regardless() -> None:
    budgets = Budgets(BudgetPolicy(retry_ratio=0.0, min_retry_concurrency=2))
    budgets.record_request()
    assert budgets.try_retry() and budgets.try_retry()
    assert not budgets.try_retry()
    budgets.retry_done()
    assert budgets.try_retry()


def test_hedges_and_retries_share_the_hedge_budget() -> None:
    budgets = Budgets(BudgetPolicy(hedge_ratio=0.1, retry_ratio=1.0, min_retry_concurrency=0))
    for _ in range(20):
        budgets.record_request()
    assert budgets.try_hedge()  # 1 extra call of 20 requests
    assert budgets.try_retry()  # 2 extra calls: the 10% hedge budget is now spent
    assert not budgets.try_hedge()
    assert budgets.snapshot() == {"requests": 20, "retries": 1, "hedges": 1}


def test_a_burst_of_hedges_spends_only_the_burst() -> None:
    budgets = Budgets(BudgetPolicy(hedge_ratio=0.05, hedge_burst=3))
    for _ in range(1000):
        budgets.record_request()
    # 1000 requests earned 50 hedges, but a stall asking for all of them at once gets 3.
    assert [budgets.try_hedge() for _ in range(5)] == [True, True, True, False, False]
    for _ in range(20):
        budgets.record_request()
    assert budgets.try_hedge() and not budgets.try_hedge()


def test_retries_push_hedging_back_until_requests_repay_them() -> None:
    budgets = Budgets(BudgetPolicy(hedge_ratio=0.5, hedge_burst=2, min_retry_concurrency=10))
    for _ in range(4):
        budgets.record_request()
    for _ in range(5):
        assert budgets.try_retry()
    # Two tokens, five retries: the balance bottoms out at minus the burst.
    for _ in range(5):
        budgets.record_request()
    assert not budgets.try_hedge()
    budgets.record_request()
    assert budgets.try_hedge()


def test_no_hedge_until_the_window_has_enough_requests() -> None:
    budgets = Budgets(BudgetPolicy(hedge_ratio=0.05))
    for _ in range(19):
        budgets.record_request()
    assert not budgets.try_hedge()
    budgets.record_request()
    assert budgets.try_hedge()


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    rng = random.Random(1)
    for retry, ceiling in ((1, 0.025), (2, 0.05), (3, 0.1), (10, 0.25)):
        draws = [backoff_s(retry, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8

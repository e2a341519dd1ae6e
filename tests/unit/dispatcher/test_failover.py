"""Failure handling against a scripted upstream: failover, retry budget, Retry-After, outlier
ejection with half-open probes, deadlines, concurrency limits and stream failover."""

import asyncio
import time

import pytest

from services.dispatcher.budgets import BudgetPolicy
from services.dispatcher.calls import Delta, DispatchResult, ModelRequest
from shared.errors import DeadlineExceeded, InvalidRequest, Unavailable
from tests.unit.dispatcher.upstream import CALL, build

TWO = """
endpoints:
  - {name: us, region: us-east, base_url: 'http://sim/us-east/v1', models: [m]}
  - {name: eu, region: eu-west, base_url: 'http://sim/eu-west/v1', models: [m]}
"""


async def test_retry_budget_stops_a_retry_storm() -> None:
    # Every region fails. 20% retries over the window, at most one retry in flight regardless.
    rig = build(endpoints=TWO, budgets=BudgetPolicy(retry_ratio=0.2, min_retry_concurrency=0))
    for region in ("us-east", "eu-west"):
        rig.upstream.set(region, status=500, ttft_s=0)
    failures = []
    for _ in range(50):
        with pytest.raises(Unavailable) as caught:
            await rig.dispatcher.dispatch(ModelRequest("m", CALL.turns, CALL.sampling), None)
        failures.append(str(caught.value))
    # 50 requests, so at most 10 retries: upstream calls stay within 1.2x, not 2x.
    assert len(rig.upstream.calls) <= 50 + 10
    assert sum("retry budget exhausted" in f for f in failures) >= 40


async def test_min_retry_concurrency_lets_a_quiet_service_fail_over() -> None:
    # A single request: 20% of 1 is no retry at all, but one retry in flight is always allowed.
    rig = build(endpoints=TWO, budgets=BudgetPolicy(retry_ratio=0.2, min_retry_concurrency=1))
    rig.upstream.set("us-east", status=503)
    result = await rig.dispatcher.dispatch(CALL, None)
    assert result.region == "eu-west" and result.attempts == 2


async def test_retry_after_holds_only_that_endpoint() -> None:
    rig = build(endpoints=TWO)
    rig.upstream.set("us-east", status=429, headers={"retry-after": "0.3"})
    first = await rig.dispatcher.dispatch(CALL, None)
    second = await rig.dispatcher.dispatch(CALL, None)
    assert (first.region, second.region) == ("eu-west", "eu-west")
    assert rig.upstream.calls == ["us-east", "eu-west", "eu-west"]
    # A 429 is not an outlier signal: us-east is held, not ejected.
    assert not rig.dispatcher.stats()[0].ejected
    rig.upstream.set("us-east", status=200)
    await asyncio.sleep(0.35)
    assert (await rig.dispatcher.dispatch(CALL, None)).region == "us-east"


async def test_every_endpoint_rate_limited_says_when_to_come_back() -> None:
    rig = build(endpoints=TWO)
    for region in ("us-east", "eu-west"):
        rig.upstream.set(region, status=429, headers={"retry-after": "30"})
    with pytest.raises(Unavailable, match="accept calls again in 30"):
        await rig.dispatcher.dispatch(CALL, None)
    with pytest.raises(Unavailable):
        await rig.dispatcher.dispatch(CALL, None)
    assert len(rig.upstream.calls) == 2, "held endpoints get no call at all"


async def test_ejection_backs_off_then_a_single_probe_readmits() -> None:
    rig = build(endpoints=TWO, eject_base_s=0.2)
    rig.upstream.set("us-east", status=500)
    await rig.dispatcher.dispatch(CALL, None)  # us fails once (threshold 1): ejected 0.2 s
    assert rig.dispatcher.stats()[0].ejected
    await rig.dispatcher.dispatch(CALL, None)
    assert rig.upstream.calls == ["us-east", "eu-west", "eu-west"]
    rig.upstream.set("us-east", status=200, ttft_s=0.1)
    await asyncio.sleep(0.25)
    # Half-open: the first call probes us; a concurrent one stays away until the probe answers.
    probe, other = await asyncio.gather(
        rig.dispatcher.dispatch(CALL, None), rig.dispatcher.dispatch(CALL, None)
    )
    assert sorted([probe.region, other.region]) == ["eu-west", "us-east"]
    assert (await rig.dispatcher.dispatch(CALL, None)).region == "us-east"


async def test_a_failed_probe_ejects_for_twice_as_long() -> None:
    rig = build(endpoints=TWO, eject_base_s=0.2)
    rig.upstream.set("us-east", status=500)
    await rig.dispatcher.dispatch(CALL, None)
    await asyncio.sleep(0.25)
    await rig.dispatcher.dispatch(CALL, None)  # the probe fails: ejected for 0.4 s now
    await asyncio.sleep(0.25)
    await rig.dispatcher.dispatch(CALL, None)
    assert rig.upstream.calls == ["us-east", "eu-west", "us-east", "eu-west", "eu-west"]


async def test_client_errors_are_not_retried() -> None:
    rig = build(endpoints=TWO)
    rig.upstream.set("us-east", status=400, message="bad field")
    with pytest.raises(InvalidRequest, match="bad field") as raised:
        await rig.dispatcher.dispatch(CALL, None)
    assert rig.upstream.calls == ["us-east"]
    # The caller learns what the provider said and its status, not the gateway's endpoint names.
    assert "400" in str(raised.value) and "us:" not in str(raised.value)


async def test_deadline_bounds_the_call_and_cancels_the_upstream() -> None:
    rig = build(endpoints=TWO, hedging=False)
    rig.upstream.set("us-east", ttft_s=5.0)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await rig.dispatcher.dispatch(CALL, time.monotonic() + 0.2)
    assert time.monotonic() - started < 1.0
    await asyncio.sleep(0.05)
    assert rig.upstream.cancelled == ["us-east"]


async def test_attempt_timeout_fails_over_to_the_next_region() -> None:
    rig = build(endpoints=TWO, attempt_timeout_s=0.1, hedging=False)
    rig.upstream.set("us-east", ttft_s=5.0)
    result = await rig.dispatcher.dispatch(CALL, None)
    assert result.region == "eu-west" and result.attempts == 2


async def test_concurrency_limit_queues_instead_of_overloading() -> None:
    one_at_a_time = """
endpoints:
  - name: llama
    region: us-east
    base_url: http://sim/us-east/v1
    models: [m]
    max_concurrency: 1
"""
    rig = build(endpoints=one_at_a_time)
    rig.upstream.set("us-east", ttft_s=0.1)
    most = [0]

    async def call() -> DispatchResult:
        task = asyncio.ensure_future(rig.dispatcher.dispatch(CALL, None))
        while not task.done():
            most[0] = max(most[0], rig.dispatcher.stats()[0].in_flight)
            await asyncio.sleep(0.01)
        return task.result()

    started = time.monotonic()
    results = await asyncio.gather(call(), call(), call())
    assert all(r.region == "us-east" for r in results)
    assert time.monotonic() - started >= 0.3, "the calls ran one after another"
    assert most[0] == 1


async def test_rpm_limit_spreads_calls_to_other_endpoints() -> None:
    limited = """
endpoints:
  - {name: us, region: us-east, base_url: 'http://sim/us-east/v1', models: [m], rpm: 2}
  - {name: eu, region: eu-west, base_url: 'http://sim/eu-west/v1', models: [m]}
"""
    rig = build(endpoints=limited)
    regions = [(await rig.dispatcher.dispatch(CALL, None)).region for _ in range(4)]
    assert regions == ["us-east", "us-east", "eu-west", "eu-west"]


async def test_stream_fails_over_before_the_first_token_only() -> None:
    rig = build(endpoints=TWO)
    rig.upstream.set("us-east", status=503)
    events = [e async for e in rig.dispatcher.dispatch_stream(CALL, None)]
    assert isinstance(events[-1], DispatchResult) and events[-1].region == "eu-west"

    rig = build(endpoints=TWO)
    rig.upstream.set("us-east", pieces=("one", "two", "three"), break_after=1)
    seen: list[str] = []
    with pytest.raises(Unavailable, match="stream broke after the first token"):
        async for event in rig.dispatcher.dispatch_stream(CALL, None):
            assert isinstance(event, Delta)
            seen.append(event.text)
    assert seen == ["one"] and rig.upstream.calls == ["us-east"]


async def test_whole_answer_fails_over_even_after_a_token() -> None:
    # The caller of Dispatch has seen nothing yet, so a broken stream is retried elsewhere.
    rig = build(endpoints=TWO)
    rig.upstream.set("us-east", pieces=("one", "two"), break_after=1)
    result = await rig.dispatcher.dispatch(CALL, None)
    assert result.region == "eu-west" and result.answer.content == "Hello"
    assert rig.upstream.calls == ["us-east", "eu-west"]


async def test_usage_missing_from_a_stream_is_counted() -> None:
    rig = build(endpoints=TWO)
    rig.upstream.set("us-east", usage=False, pieces=("one two", " three"))
    result = await rig.dispatcher.dispatch(CALL, None)
    assert result.answer.usage.output_tokens == 3 and result.answer.usage.input_tokens > 0
    assert result.cost_nano_usd > 0

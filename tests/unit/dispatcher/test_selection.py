"""Power of two choices on the TTFT EWMA, preferring the caller's region."""

import random
from collections import Counter

from services.dispatcher.endpoints import parse_endpoints
from services.dispatcher.selection import EndpointState, Selector, StatePolicy, build_states

ENDPOINTS = """
endpoints:
  - {name: us1, region: us-east, base_url: 'http://a/v1', models: [m]}
  - {name: us2, region: us-east, base_url: 'http://b/v1', models: [m]}
  - {name: us3, region: us-east, base_url: 'http://c/v1', models: [m]}
  - {name: eu, region: eu-west, base_url: 'http://d/v1', models: [m]}
"""


def selector(seed: int = 0) -> Selector:
    states = build_states(parse_endpoints(ENDPOINTS, {}), StatePolicy(), lambda: 0.0)
    return Selector(states, "us-east", random.Random(seed))


def picked(sel: Selector, region: str, exclude: set[str], *, two: bool = True) -> EndpointState:
    state = sel.pick("m", region, exclude, two_choices=two)
    assert state is not None
    return state


def by_name(sel: Selector, name: str):
    return next(s for s in sel.states if s.name == name)


def test_two_choices_favour_the_faster_endpoint_without_starving_others() -> None:
    sel = selector()
    for name, ttft in (("us1", 0.05), ("us2", 0.10), ("us3", 0.40), ("eu", 0.01)):
        by_name(sel, name).latency.record(ttft, ttft)
    picks = Counter(picked(sel, "", set()).name for _ in range(3000))
    # The caller's region only, though eu is fastest; the slowest is never the better of two.
    assert set(picks) == {"us1", "us2"}
    assert picks["us1"] > picks["us2"] * 1.5


def test_load_counts_as_well_as_latency() -> None:
    sel = selector()
    for name in ("us1", "us2", "us3"):
        by_name(sel, name).latency.record(0.1, 0.1)
    busy = by_name(sel, "us1")
    for _ in range(5):
        sel.acquire(busy)
    picks = {picked(sel, "", set(), two=False).name for _ in range(20)}
    assert "us1" not in picks


def test_other_regions_when_the_callers_has_nothing_left() -> None:
    sel = selector()
    assert picked(sel, "eu-west", set()).name == "eu"
    assert picked(sel, "eu-west", {"eu"}).endpoint.region == "us-east"
    for name in ("us1", "us2", "us3"):
        by_name(sel, name).hold.until = float("inf")
    assert picked(sel, "", set()).name == "eu"
    assert sel.pick("m", "", {"eu"}, two_choices=True) is None


def test_ejected_endpoints_are_a_last_resort_but_held_ones_never() -> None:
    sel = selector()
    states = sel.states
    for state in states:
        state.ejection.ejected_until = 10.0
    states[0].ejection.ejected_until = 5.0
    states[1].hold.until = 100.0
    assert sel.pick("m", "", set(), two_choices=True) is None
    first, second = sel.last_resort("m", set()), sel.last_resort("m", {"us1"})
    assert first is not None and first.name == "us1"
    assert second is not None and second.name in {"us3", "eu"}

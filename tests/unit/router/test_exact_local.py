"""The router's exact copies: what they are keyed by, their bounds, expiry, and the feed rules
(removals, resets, a feed that is down or stale, late answers)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.router.exact_local import TOMBSTONE_S, ExactCopies, LocalBounds, copy_key
from services.router.model import CachedAnswer, ChatRequest
from shared.chat import Finish, FormatKind, ResponseFormat, Sampling, ToolFunction, ToolSet
from shared.pricing import TokenUsage
from tests.unit.cache.fakes import FakeClock
from tests.unit.router.fixtures import admit_acme, policy_doc


def hit(entry_id: str = "e-1", content: str = "Paris.") -> CachedAnswer:
    return CachedAnswer("exact", content, "cheap", TokenUsage(10, 5), 1.0, Finish.STOP, entry_id)


def asked(question: str = "What is the capital of France?") -> ChatRequest:
    return admit_acme(policy_doc(), question)


def live(bounds: LocalBounds | None = None) -> tuple[ExactCopies, FakeClock]:
    clock = FakeClock(100.0)
    copies = ExactCopies(bounds, clock)
    copies.fresh(clock())
    return copies, clock


def keep(copies: ExactCopies, request: ChatRequest, answer: CachedAnswer, ttl: float = 60) -> bool:
    return copies.admit(copies.ticket(), request, answer, ttl)


def test_a_kept_copy_serves_the_same_request_marked_local() -> None:
    copies, _ = live()
    request = asked()
    assert copies.get(request) is None
    assert keep(copies, request, hit())
    served = copies.get(request)
    assert served is not None and served.local and served.content == "Paris."
    assert copies.take_served() == ["e-1"] and copies.take_served() == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda r: replace(r, tenant=replace(r.tenant, tenant_id="other")), id="tenant"
        ),
        pytest.param(
            lambda r: replace(r, model_class=replace(r.model_class, name="code")), id="model-class"
        ),
        pytest.param(lambda r: replace(r, turns=(replace(r.turns[0], name="bob"),)), id="turns"),
        pytest.param(lambda r: replace(r, sampling=Sampling(temperature=0.5)), id="temperature"),
        pytest.param(lambda r: replace(r, sampling=Sampling(temperature=-0.0)), id="minus-zero"),
        pytest.param(lambda r: replace(r, sampling=Sampling(seed=7)), id="seed"),
        pytest.param(
            lambda r: replace(r, response_format=ResponseFormat(FormatKind.JSON_OBJECT)),
            id="response-format",
        ),
        pytest.param(lambda r: replace(r, tools=ToolSet((ToolFunction("lookup"),))), id="tools"),
        # A canary's policy may define the class otherwise: a repeat served from a copy is
        # not validated again (answering.py), so each policy version keeps its own copies.
        pytest.param(lambda r: replace(r, policy_version="canary-2"), id="policy-version"),
    ],
)
def test_a_copy_never_serves_a_request_that_differs_in_a_keyed_field(change: object) -> None:
    copies, _ = live()
    request = asked()
    other = change(request)  # type: ignore[operator]
    assert copy_key(other) != copy_key(request)
    keep(copies, request, hit())
    assert copies.get(other) is None
    assert copies.get(request) is not None


def test_fields_the_cache_ignores_for_exact_hits_share_a_copy() -> None:
    # The request id and the caller's own tags never reach the cache's key.
    copies, _ = live()
    request = asked()
    keep(copies, request, hit())
    assert copies.get(replace(request, request_id="r2", metadata=(("team", "x"),))) is not None


def test_a_copy_expires_with_its_entry_counted_from_before_the_call() -> None:
    copies, clock = live()
    request = asked()
    ticket = copies.ticket()
    clock.advance(2)  # the call took 2 s; the cache said 10 s were left when it answered
    assert copies.admit(ticket, request, hit(), 10)
    clock.advance(7.9)
    copies.fresh(clock())
    assert copies.get(request) is not None
    clock.advance(0.2)
    assert copies.get(request) is None and len(copies) == 0


def test_a_copy_never_outlives_the_max_age() -> None:
    copies, clock = live(LocalBounds(max_age_s=5.0, feed_stale_s=1000.0))
    request = asked()
    keep(copies, request, hit(), ttl=3600)
    clock.advance(4.9)
    assert copies.get(request) is not None
    clock.advance(0.2)
    assert copies.get(request) is None


def test_copies_are_bounded_by_count_least_recently_used_first() -> None:
    copies, _ = live(LocalBounds(max_entries=2))
    first, second, third = asked("one?"), asked("two?"), asked("three?")
    keep(copies, first, hit("e-1"))
    keep(copies, second, hit("e-2"))
    copies.get(first)  # now the most recently used
    keep(copies, third, hit("e-3"))
    assert len(copies) == 2
    assert copies.get(second) is None
    assert copies.get(first) is not None and copies.get(third) is not None


def test_copies_are_bounded_by_bytes() -> None:
    copies, _ = live(LocalBounds(max_bytes=4000))
    keep(copies, asked("one?"), hit("e-1", "x" * 1000))
    keep(copies, asked("two?"), hit("e-2", "y" * 1000))
    keep(copies, asked("three?"), hit("e-3", "z" * 1000))
    assert len(copies) == 2 and copies.nbytes <= 4000
    assert copies.get(asked("one?")) is None
    # An answer larger than the whole bound is never kept.
    assert not keep(copies, asked("four?"), hit("e-4", "w" * 5000))


def test_a_removed_entry_is_dropped_and_never_admitted_late() -> None:
    copies, _ = live()
    request = asked()
    ticket = copies.ticket()
    keep(copies, request, hit("e-1"))
    copies.removed(["e-1"])
    assert copies.get(request) is None
    # A Lookup answered before the removal, arriving after it.
    assert not copies.admit(ticket, request, hit("e-1"), 60)
    assert copies.get(request) is None


def test_a_tombstone_is_kept_long_enough_for_any_call_that_may_admit() -> None:
    copies, clock = live(LocalBounds(feed_stale_s=1000.0))
    copies.removed(["e-1"])
    clock.advance(TOMBSTONE_S / 2)
    ticket = copies.ticket()
    clock.advance(TOMBSTONE_S / 2 - 1)
    copies.removed([])  # prunes only what is older than TOMBSTONE_S
    assert not copies.admit(ticket, asked(), hit("e-1"), 3600)
    # A call slower than half the tombstone time admits nothing.
    slow = copies.ticket()
    clock.advance(TOMBSTONE_S / 2 + 1)
    assert not copies.admit(slow, asked(), hit("e-2"), 3600)


def test_a_reset_drops_every_copy_and_refuses_calls_started_before_it() -> None:
    copies, _ = live()
    request = asked()
    keep(copies, request, hit("e-1"))
    ticket = copies.ticket()
    copies.reset()
    assert copies.get(request) is None and len(copies) == 0
    assert not copies.admit(ticket, request, hit("e-1"), 60)
    assert keep(copies, request, hit("e-1"))


def test_a_feed_that_is_down_drops_everything_and_admits_nothing() -> None:
    copies, clock = live()
    request = asked()
    keep(copies, request, hit())
    copies.down()
    assert copies.get(request) is None and len(copies) == 0
    assert copies.ticket() is None and not keep(copies, request, hit())
    copies.fresh(clock())
    assert keep(copies, request, hit())


def test_a_stale_feed_bypasses_the_copies_until_a_poll_succeeds() -> None:
    copies, clock = live(LocalBounds(feed_stale_s=3.0))
    request = asked()
    keep(copies, request, hit())
    clock.advance(3.1)
    assert copies.get(request) is None and copies.ticket() is None
    assert len(copies) == 1  # bypassed, not dropped: a poll lists what was missed
    copies.fresh(clock())
    assert copies.get(request) is not None


def test_nothing_is_kept_when_turned_off() -> None:
    copies, _ = live(LocalBounds(max_entries=0))
    assert copies.ticket() is None and not keep(copies, asked(), hit())

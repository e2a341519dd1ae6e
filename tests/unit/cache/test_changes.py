"""The change feed for routers' exact copies: every way an entry stops being served is listed,
a cursor the log cannot serve gets a reset, a poll waits for a removal, and hits served from
copies are counted as the cache's own."""

from __future__ import annotations

import asyncio

from google.protobuf.duration_pb2 import Duration
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.common.v1 import common_pb2

from services.cache.changes import ChangeLog
from services.cache.model import ExactTarget, NamespaceTarget, TagTarget, TenantTarget
from tests.unit.cache.fakes import FakeClock, answer, ask, make_cache
from tests.unit.cache.test_servicer import Served, lookup, served, store

__all__ = ["served"]  # the fixture, shared with test_servicer.py


def test_the_log_lists_removals_after_a_cursor_and_resets_what_it_cannot() -> None:
    log = ChangeLog(capacity=3)
    assert log.since("", 0).reset  # a first poll learns the epoch
    log.removed(["a", "b"])
    assert log.since(log.epoch, 0).removed == ("a", "b")
    assert log.since(log.epoch, 1).removed == ("b",)
    assert log.since(log.epoch, 2).removed == ()
    log.removed(["c", "d"])  # "a" falls out of the log
    assert log.since(log.epoch, 0).reset
    assert log.since(log.epoch, 1).removed == ("b", "c", "d")
    assert log.since("another", 4).reset
    assert log.since(log.epoch, 9).reset  # a cursor from the future: not this log's


async def test_a_poll_waits_for_the_next_removal() -> None:
    log = ChangeLog()
    waiting = asyncio.create_task(log.wait(log.epoch, 0, 30.0))
    await asyncio.sleep(0)
    assert not waiting.done()
    log.removed(["x"])
    found = await asyncio.wait_for(waiting, 30)
    assert found.removed == ("x",) and found.last == 1


async def test_every_invalidate_target_lists_the_entries_it_removed() -> None:
    cache = await make_cache()
    france = await cache.store(ask("capital of france"), answer(), tags=["geo"])
    spain = await cache.store(ask("capital of spain"), answer("Madrid."), tags=["es"])
    italy = await cache.store(ask("capital of italy"), answer("Rome."))
    other = await cache.store(ask("capital of peru", tenant="globex"), answer("Lima."))
    log = cache.changes
    start = log.last
    await cache.invalidate("acme", ExactTarget(ask("capital of france")))
    await cache.invalidate("acme", TagTarget("es"))
    await cache.invalidate("acme", NamespaceTarget(italy.namespace))
    await cache.invalidate("globex", TenantTarget())
    removed = log.since(log.epoch, start).removed
    assert removed == (france.entry_id, spain.entry_id, italy.entry_id, other.entry_id)


async def test_replaced_expired_evicted_and_reported_entries_are_listed() -> None:
    clock = FakeClock()
    cache = await make_cache(clock=clock, max_entries=2, ttl_s=60)
    first = await cache.store(ask("one"), answer("1"))
    replacement = await cache.store(ask("one"), answer("uno"))
    short = await cache.store(ask("two"), answer("2"), ttl_s=5)
    clock.advance(10)
    await cache.lookup(ask("two"))  # finds it expired
    a = await cache.store(ask("three"), answer("3"))
    await cache.store(ask("four"), answer("4"))  # evicts "one" (least recently used)
    await cache.report_hit(ask("three"), a.entry_id, correct=False)
    removed = cache.changes.since(cache.changes.epoch, 0).removed
    assert removed == (first.entry_id, short.entry_id, replacement.entry_id, a.entry_id)
    await cache.settle()


async def test_hits_served_from_copies_count_as_exact_hits() -> None:
    cache = await make_cache()
    stored = await cache.store(ask("capital of france"), answer())
    cache.served_elsewhere([stored.entry_id, stored.entry_id, "gone"])
    assert cache.stats("acme").counters.exact_hits == 2


async def test_lookup_and_store_say_how_long_the_entry_lives(served: Served) -> None:
    stored = await served.stub.Store(store("capital of france", ttl=Duration(seconds=300)))
    assert 299 < stored.expires_in.ToNanoseconds() / 1e9 <= 300
    found = await served.stub.Lookup(lookup("capital of france"))
    assert found.kind == pb.HIT_KIND_EXACT
    assert 299 < found.expires_in.ToNanoseconds() / 1e9 <= 300
    missed = await served.stub.Lookup(lookup("something else entirely"))
    assert not missed.HasField("expires_in")


async def test_the_changes_rpc_long_polls_for_removals(served: Served) -> None:
    first = await served.stub.Changes(pb.ChangesRequest())
    assert first.reset and first.epoch
    stored = await served.stub.Store(store("capital of france"))
    poll = pb.ChangesRequest(epoch=first.epoch, after=first.last, wait=Duration(seconds=30))
    waiting = asyncio.ensure_future(served.stub.Changes(poll))
    await served.stub.Invalidate(
        pb.InvalidateRequest(context=common_pb2.RequestContext(tenant_id="acme"), tag="none")
    )
    assert not waiting.done()
    await served.stub.Invalidate(
        pb.InvalidateRequest(
            context=common_pb2.RequestContext(tenant_id="acme"),
            namespace_key=stored.namespace_key,
        )
    )
    changed = await asyncio.wait_for(waiting, 30)
    assert (changed.reset, list(changed.removed_entry_ids)) == (False, [stored.entry_id])
    assert changed.last == first.last + 1


async def test_the_poll_is_not_traced(served: Served) -> None:
    # One call a second per router, part of no request: it would bury the traces.
    await served.stub.Changes(pb.ChangesRequest())
    await served.stub.Stats(pb.StatsRequest())
    names = [span.name for span in served.spans.get_finished_spans()]
    assert any(name.endswith("/Stats") for name in names)
    assert not any(name.endswith("/Changes") for name in names)

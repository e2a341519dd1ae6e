"""BackgroundStores: bounded, counted cache stores off the request path, and which pending
stores a lookup waits for."""

import asyncio
from dataclasses import replace

from services.router.model import StageName, StageUnavailable
from services.router.stores import BackgroundStores, _overlap, store_key
from shared.chat import ToolFunction, ToolSet
from tests.unit.router.test_cascade import request


async def test_failed_stores_are_counted_not_raised() -> None:
    stores = BackgroundStores()

    async def refused() -> None:
        raise StageUnavailable(StageName.CACHE, "UNAVAILABLE: connection refused")

    async def broken() -> None:
        raise ValueError("a bug in the cache client")

    stores.submit(refused)
    stores.submit(broken)
    await stores.drain()
    assert (stores.stored, stores.failed, stores.dropped) == (0, 2, 0)


async def test_stores_beyond_the_backlog_are_dropped_and_counted() -> None:
    stores = BackgroundStores(concurrency=1, backlog=1)
    release = asyncio.Event()
    done: list[int] = []

    def store(n: int):
        async def run() -> None:
            await release.wait()
            done.append(n)

        return run

    for n in range(3):
        stores.submit(store(n))
    assert (stores.pending, stores.dropped) == (2, 1)
    release.set()
    await stores.drain()
    assert sorted(done) == [0, 1] and stores.stored == 2


async def test_drain_gives_up_after_its_timeout() -> None:
    stores = BackgroundStores()
    never = asyncio.Event()
    stores.submit(never.wait)
    await asyncio.wait_for(stores.drain(timeout_s=0.05), timeout=2)
    assert stores.pending == 1
    never.set()
    await stores.drain()
    assert stores.stored == 1


def test_a_paraphrase_overlaps_and_an_unrelated_question_does_not() -> None:
    original = frozenset({"capital", "france"})
    assert _overlap(frozenset({"capital", "city", "france"}), original)
    assert not _overlap(frozenset({"population", "spain"}), original)
    # Only stopwords or short words on both sides: the same (empty) question.
    assert _overlap(frozenset(), frozenset())
    assert not _overlap(frozenset(), original)


async def test_settled_waits_only_for_related_stores_of_its_key() -> None:
    stores = BackgroundStores(visibility_s=30)
    release = asyncio.Event()
    stores.submit(release.wait, "ns", frozenset({"capital", "france"}))
    await asyncio.wait_for(stores.settled("ns", frozenset({"hamlet"})), timeout=1)
    await asyncio.wait_for(stores.settled("other", frozenset({"capital", "france"})), timeout=1)
    waiting = asyncio.ensure_future(stores.settled("ns", frozenset({"capital", "france"})))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    release.set()
    await asyncio.wait_for(waiting, timeout=1)
    await stores.drain()
    assert stores.stored == 1


def test_a_request_with_tools_never_waits_for_a_store_without_them() -> None:
    plain = request()
    with_tools = replace(plain, tools=ToolSet((ToolFunction("get_weather"),)))
    assert store_key(plain) != store_key(with_tools)

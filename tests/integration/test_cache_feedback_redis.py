"""Feedback counts in the shared Redis store: replicas add up, and a reopened store reads the
sums back (the counts a restarted replica calibrates from), and each outcome reaches the other
replicas through the change feed as it happens. Starts its own redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import cast

import pytest

from services.cache.store import Change, FeedbackAdded, FeedbackCount
from services.cache.store_redis import RedisStore
from tests.support import running_redis

pytestmark = pytest.mark.integration


async def test_two_stores_on_one_redis_add_up_their_feedback(tmp_path: Path) -> None:
    with running_redis(tmp_path) as url:
        replica_a, replica_b = RedisStore(url), RedisStore(url)
        await replica_a.open()
        await replica_b.open()
        try:
            await replica_a.add_feedback("cosine", "ns:1", 925, True)
            await replica_b.add_feedback("cosine", "ns:1", 925, False)
            await replica_b.add_feedback("cosine", "ns:2", 3, False)
            await replica_a.add_feedback("learned:abc", "ns:1", 925, True)
        finally:
            await replica_a.close()
            await replica_b.close()
        reopened = RedisStore(url)
        await reopened.open()
        try:
            # Namespace keys may hold ':' (they do not in practice: 64 hex digits); the field
            # layout keeps them whole.
            assert await reopened.load_feedback("cosine") == [
                FeedbackCount("cosine", "ns:1", 925, seen=2, wrong=1),
                FeedbackCount("cosine", "ns:2", 3, seen=1, wrong=0),
            ]
            assert await reopened.load_feedback("learned:abc") == [
                FeedbackCount("learned:abc", "ns:1", 925, seen=1, wrong=1)
            ]
            assert await reopened.load_feedback("learned:other") == []
        finally:
            await reopened.close()


async def test_a_report_on_one_replica_reaches_the_others_through_the_change_feed(
    tmp_path: Path,
) -> None:
    with running_redis(tmp_path) as url:
        writer, follower = RedisStore(url), RedisStore(url)
        await writer.open()
        await follower.open()
        # RedisStore.changes is an async generator, closed here so it stops reading.
        feed = cast(AsyncGenerator[Change, None], follower.changes(dim=384))
        try:
            await writer.add_feedback("learned:abc", "ns:1", 990, True)
            await writer.add_feedback("learned:abc", "ns:1", 990, False)
            first = await asyncio.wait_for(anext(feed), timeout=5)
            second = await asyncio.wait_for(anext(feed), timeout=5)
        finally:
            await feed.aclose()
            await writer.close()
            await follower.close()

    assert first == FeedbackAdded(FeedbackCount("learned:abc", "ns:1", 990, seen=1, wrong=1))
    assert second == FeedbackAdded(FeedbackCount("learned:abc", "ns:1", 990, seen=1, wrong=0))

"""Feedback counts in the shared Redis store: replicas add up, and a reopened store reads the
sums back (the counts a restarted replica calibrates from). Starts its own redis-server."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cache.store import FeedbackCount
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

"""RedisStore: one entry store shared by several cache replicas.

Layout (all keys under the prefix `sluice:cache:`):

- `e:<entry_id>`: a hash with `meta` (JSON, records.meta_of) and `vector` (float32 blob).
  PEXPIREAT is set to the entry's expiry, so Redis frees expired entries even when no
  replica is running.
- `fb:<scale>`: a hash of feedback counts (ReportHit outcomes), fields
  `<seen|wrong>:<bin>:<namespace>` incremented with HINCRBY, so replicas add up their counts;
  each replica reads them at start, then applies the others' outcomes from the stream.
- `embedder`: the identity of the embedder that made every stored vector.
- `events`: a stream of changes, one item per put, delete or feedback outcome: `op`
  (put|del|fb), `id` and `origin` (the writing replica's random id); an `fb` item also carries
  `scale`, `ns`, `bin` and `wrong`. Every write and its event go in one MULTI/EXEC, so a
  replica never sees an event without the write or the reverse.

Each replica keeps the whole entry set in memory (and the vectors in its FAISS indexes). At
start it notes the stream's last id, loads every hash with SCAN, then tails the stream from the
noted id with XREAD BLOCK, so a write made during the scan is replayed and nothing is missed
(applying a put or a delete twice is harmless). Entries expired by Redis itself produce no
event; replicas drop those on their own clocks. The stream is trimmed to about STREAM_MAXLEN
items; a replica that falls further behind than that (a long partition) detects the gap and
reloads everything (Resynced).

Durability is Redis's: with the default snapshotting an acknowledged Store can be lost if
Redis itself dies; run Redis with `appendonly yes` (and `appendfsync everysec` or `always`)
when that matters.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from services.cache.records import EntryRecord, encode_meta, record_from_meta, vector_blob
from services.cache.store import (
    Change,
    EntryDeleted,
    EntryPut,
    FeedbackAdded,
    FeedbackCount,
    Loaded,
    Resynced,
    StoreUnavailable,
)

LOG = logging.getLogger(__name__)
PREFIX = "sluice:cache:"
EVENTS = PREFIX + "events"
# ~100 bytes per event in Redis, so about 100 MB at most for the change feed.
STREAM_MAXLEN = 1_000_000
SCAN_BATCH = 1000
READ_BATCH = 512
BLOCK_MS = 1000
RETRY_MAX_S = 5.0
# Stream items as redis-py returns them without decoding: (id, {field: value}).
_Messages = list[tuple[bytes, dict[bytes, bytes]]]


def _key(entry_id: str) -> str:
    return f"{PREFIX}e:{entry_id}"


def _id_tuple(stream_id: bytes | str) -> tuple[int, int]:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class RedisStore:
    """Entries in Redis hashes, with a stream of changes that every replica tails."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._description = f"redis://{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"
        # A blocked XREAD waits BLOCK_MS; the socket timeout must be longer than that.
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=10, socket_connect_timeout=3, health_check_interval=30
        )
        self._origin = uuid.uuid4().hex[:16].encode()
        self._position = "0-0"

    @property
    def description(self) -> str:
        return self._description

    async def open(self) -> None:
        try:
            await self._redis.ping()
        except RedisError as error:
            raise StoreUnavailable(f"{self._description}: {error}") from None

    async def load(self, dim: int) -> AsyncIterator[list[Loaded]]:
        # Noted before the scan: events after it are replayed by changes().
        self._position = await self._last_event_id()
        async for batch in self._scan(dim):
            yield batch

    async def put(self, record: EntryRecord, replaces: str | None) -> None:
        mapping: dict[str, bytes] = {"meta": encode_meta(record)}
        blob = vector_blob(record)
        if blob is not None:
            mapping["vector"] = blob
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(_key(record.entry_id), mapping=mapping)  # type: ignore[arg-type]
        pipe.pexpireat(_key(record.entry_id), int(record.expires_at * 1000))
        if replaces is not None and replaces != record.entry_id:
            pipe.delete(_key(replaces))
            self._event(pipe, "del", replaces)
        self._event(pipe, "put", record.entry_id)
        await self._execute(pipe)

    async def delete(self, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(*(_key(entry_id) for entry_id in entry_ids))
        for entry_id in entry_ids:
            self._event(pipe, "del", entry_id)
        await self._execute(pipe)

    async def changes(self, dim: int) -> AsyncIterator[Change]:
        delay = 0.1
        while True:
            try:
                reply = await self._redis.xread(
                    {EVENTS: self._position}, count=READ_BATCH, block=BLOCK_MS
                )
                if reply and await self._missed_events():
                    LOG.warning("cache change feed trimmed past this replica; reloading")
                    yield await self._resync(dim)
                    continue
                for _, messages in cast(list[tuple[bytes, _Messages]], reply or []):
                    async for change in self._decode(messages, dim):
                        yield change
                delay = 0.1
            except RedisError as error:
                LOG.warning("cache change feed: %s; retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)

    async def add_feedback(self, scale: str, namespace: str, score_bin: int, wrong: bool) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hincrby(f"{PREFIX}fb:{scale}", f"seen:{score_bin}:{namespace}", 1)
        if wrong:
            pipe.hincrby(f"{PREFIX}fb:{scale}", f"wrong:{score_bin}:{namespace}", 1)
        # The other replicas apply the outcome as it happens (FeedbackAdded), not at restart.
        self._event(
            pipe, "fb", "", scale=scale, ns=namespace, bin=str(score_bin), wrong=str(int(wrong))
        )
        await self._execute(pipe)

    async def load_feedback(self, scale: str) -> list[FeedbackCount]:
        try:
            raw = cast(dict[bytes, bytes], await self._redis.hgetall(f"{PREFIX}fb:{scale}"))
        except RedisError as error:
            raise StoreUnavailable(f"{self._description}: {error}") from None
        counts: dict[tuple[str, int], list[int]] = {}
        for field, value in raw.items():
            kind, score_bin, namespace = field.decode().split(":", 2)
            slot = counts.setdefault((namespace, int(score_bin)), [0, 0])
            slot[1 if kind == "wrong" else 0] += int(value)
        return [
            FeedbackCount(scale, namespace, score_bin, seen, wrong)
            for (namespace, score_bin), (seen, wrong) in sorted(counts.items())
        ]

    async def embedder(self) -> str | None:
        try:
            value = await self._redis.get(f"{PREFIX}embedder")
        except RedisError as error:
            raise StoreUnavailable(f"{self._description}: {error}") from None
        return value.decode() if isinstance(value, bytes) else value

    async def set_embedder(self, identity: str) -> None:
        try:
            await self._redis.set(f"{PREFIX}embedder", identity)
        except RedisError as error:
            raise StoreUnavailable(f"{self._description}: {error}") from None

    async def close(self) -> None:
        await self._redis.aclose()

    def _event(self, pipe: Any, op: str, entry_id: str, **extra: str) -> None:
        fields: dict[FieldT, EncodableT] = {"op": op, "id": entry_id, "origin": self._origin}
        fields.update(extra)
        pipe.xadd(EVENTS, fields, maxlen=STREAM_MAXLEN, approximate=True)

    async def _execute(self, pipe: Any) -> None:
        try:
            await pipe.execute()
        except RedisError as error:
            raise StoreUnavailable(f"{self._description}: {error}") from None

    async def _decode(self, messages: _Messages, dim: int) -> AsyncIterator[Change]:
        """Turns stream items into changes, in order, skipping this replica's own."""
        puts: list[str] = []
        for message_id, fields in messages:
            self._position = message_id.decode()
            if fields.get(b"origin") == self._origin:
                continue
            entry_id = fields[b"id"].decode()
            if fields.get(b"op") == b"put":
                puts.append(entry_id)
                continue
            for record in await self._fetch(puts, dim):
                yield EntryPut(record)
            puts = []
            if fields.get(b"op") == b"fb":
                yield FeedbackAdded(_feedback_count(fields))
            else:
                yield EntryDeleted(entry_id)
        for record in await self._fetch(puts, dim):
            yield EntryPut(record)

    async def _fetch(self, entry_ids: Sequence[str], dim: int) -> list[Loaded]:
        """The entries still stored (one may be deleted again by now)."""
        if not entry_ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for entry_id in entry_ids:
            pipe.hmget(_key(entry_id), ["meta", "vector"])
        found: list[Loaded] = []
        for meta, blob in await pipe.execute():
            if meta is not None:
                found.append(record_from_meta(orjson.loads(meta), blob, dim))
        return found

    async def _scan(self, dim: int) -> AsyncIterator[list[Loaded]]:
        keys: list[bytes] = []
        async for key in self._redis.scan_iter(match=f"{PREFIX}e:*", count=SCAN_BATCH):
            keys.append(key)
            if len(keys) >= SCAN_BATCH:
                yield await self._fetch([k.decode()[len(PREFIX) + 2 :] for k in keys], dim)
                keys = []
        if keys:
            yield await self._fetch([k.decode()[len(PREFIX) + 2 :] for k in keys], dim)

    async def _resync(self, dim: int) -> Resynced:
        self._position = await self._last_event_id()
        records: list[EntryRecord] = []
        async for batch in self._scan(dim):
            records.extend(item for item in batch if isinstance(item, EntryRecord))
        return Resynced(records)

    async def _last_event_id(self) -> str:
        last = cast(_Messages, await self._redis.xrevrange(EVENTS, count=1))
        return last[0][0].decode() if last else "0-0"

    async def _missed_events(self) -> bool:
        """True when items after our position were trimmed before we read them."""
        first = cast(_Messages, await self._redis.xrange(EVENTS, count=1))
        if not first or self._position == "0-0":
            return False
        return _id_tuple(first[0][0]) > _id_tuple(self._position)


def _feedback_count(fields: dict[bytes, bytes]) -> FeedbackCount:
    """One outcome from an `fb` event."""
    wrong = fields[b"wrong"] == b"1"
    return FeedbackCount(
        fields[b"scale"].decode(),
        fields[b"ns"].decode(),
        int(fields[b"bin"]),
        seen=1,
        wrong=int(wrong),
    )

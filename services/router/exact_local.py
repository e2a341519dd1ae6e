"""The router's own copies of exact cache entries, so that a repeated request needs no hop.

An exact hit is the same request answered before, so the router may keep the answer itself.
A copy is taken from the cache's own word, never made up: when the cache serves an exact hit
(Lookup) or acknowledges a Store of this router's, with the entry's id and remaining life.
Copies are keyed by everything the router sends the cache for a lookup that can change its
answer (tenant, model class, every turn, sampling, response format, tools), and by the policy
version that admitted it: the same request in every field, which is stricter than the cache's
own exact key, so a copy never serves a request the cache would not have answered with that
entry. A key thus covers every field admission validates but the request id, the caller's tags
and its cost cap, so a repeat served from a copy needs only those checked (admission.py); the
copy keeps the prompt's token count, which the key's fields fix. They are bounded by count and bytes
and evicted least recently used first.

Staying right (the change feed, exact_feed.py): the cache lists every entry it stops serving
(invalidated by any target, replaced, expired, evicted, reported wrong, or removed by another
replica sharing its Redis store) and the router long-polls for those ids. A copy is served only
while the feed is fresh: its last successful poll was sent at most `feed_stale_s` ago. So a
removal made at time t stops local hits when the poll carrying it arrives, and at worst by
t + feed_stale_s, when polls fail (the copies are then dropped) or stall (they are bypassed).
Besides, a copy never outlives its entry's TTL (taken from the cache's remaining life, counted
from before the call) nor `max_age_s` from its admission, the bound of last resort.

Races: a Lookup or Store answered before a removal may arrive after it. Removed ids are
remembered for TOMBSTONE_S and a copy is never admitted for one of them, nor from a call that
took longer than half of that, nor from a call that started before the feed was last reset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from services.router.model import CachedAnswer, ChatRequest

# How long a removed id is remembered against late admissions (see the races above).
TOMBSTONE_S = 60.0
MAX_TOMBSTONES = 200_000
# Ids served from copies, reported to the cache on the next poll; beyond this they are dropped
# (the cache's hit counters and LRU order are bookkeeping, never correctness).
MAX_SERVED = 10_000
# A copy's fixed cost beyond its texts: the key, the objects, the dict slots.
OVERHEAD_BYTES = 600


@dataclass(frozen=True)
class LocalBounds:
    max_entries: int = 10_000
    max_bytes: int = 16 << 20
    max_age_s: float = 60.0
    feed_stale_s: float = 3.0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_bytes > 0


@dataclass(frozen=True)
class LocalCopy:
    entry_id: str
    answer: CachedAnswer
    expires_at: float  # on the router's monotonic clock
    nbytes: int
    # Admission's count for the request it was kept for, the same for every request it serves.
    prompt_tokens: int


@dataclass(frozen=True)
class Ticket:
    """Taken before a Lookup or Store: which feed generation the call started under."""

    generation: int
    started: float


def copy_key(request: ChatRequest) -> str:
    """Every field of the request the cache's lookup reads and its exact key covers, and the
    policy version. repr of these frozen dataclasses is exact (floats round-trip, -0.0 stays
    apart from 0.0)."""
    fields = (
        request.tenant.tenant_id,
        request.model_class.name,
        request.policy_version,
        request.turns,
        request.sampling,
        request.response_format,
        request.tools,
    )
    return hashlib.blake2b(repr(fields).encode("utf-8"), digest_size=32).hexdigest()


class ExactCopies:
    """Bounded copies of exact entries, served only while the change feed is fresh."""

    def __init__(
        self, bounds: LocalBounds | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.bounds = bounds or LocalBounds()
        self._clock = clock
        self._copies: OrderedDict[str, LocalCopy] = OrderedDict()
        self._keys_by_entry: dict[str, str] = {}
        self._tombstones: OrderedDict[str, float] = OrderedDict()
        self._served: list[str] = []
        self.nbytes = 0
        self._generation = 0
        # When the last successful poll was sent; None while the feed is down.
        self._contact: float | None = None

    def __len__(self) -> int:
        return len(self._copies)

    @property
    def live(self) -> bool:
        contact = self._contact
        return contact is not None and self._clock() - contact <= self.bounds.feed_stale_s

    # The request path (CacheStage).

    def get(self, request: ChatRequest) -> CachedAnswer | None:
        """The copy's answer for exactly this request, if one may be served now."""
        found = self.find(request)
        return None if found is None else found.answer

    def find(self, request: ChatRequest, key: str = "") -> LocalCopy | None:
        """The copy for exactly this request (whose copy_key is `key`, when known), if one may
        be served now."""
        if not self._copies or not self.live:
            return None
        key = key or copy_key(request)
        found = self._copies.get(key)
        if found is None:
            return None
        if found.expires_at <= self._clock():
            self._drop(key)
            return None
        self._copies.move_to_end(key)
        if len(self._served) < MAX_SERVED:
            self._served.append(found.entry_id)
        return found

    def ticket(self) -> Ticket | None:
        """None when no copy could be admitted from a call starting now."""
        if not self.bounds.enabled or not self.live:
            return None
        return Ticket(self._generation, self._clock())

    def admit(
        self,
        ticket: Ticket | None,
        request: ChatRequest,
        answer: CachedAnswer,
        expires_in_s: float,
    ) -> bool:
        """Keeps a copy of the exact entry the cache just named; True if kept."""
        now = self._clock()
        if (
            ticket is None
            or ticket.generation != self._generation
            or not self.live
            or now - ticket.started > TOMBSTONE_S / 2
            or expires_in_s <= 0
            or not answer.entry_id
            or answer.entry_id in self._tombstones
        ):
            return False
        kept = dataclasses.replace(answer, kind="exact", similarity=1.0, local=True)
        key = copy_key(request)
        nbytes = OVERHEAD_BYTES + _answer_bytes(kept)
        if nbytes > self.bounds.max_bytes:
            return False
        expires_at = min(ticket.started + expires_in_s, now + self.bounds.max_age_s)
        self._drop(key)
        self._copies[key] = LocalCopy(
            answer.entry_id, kept, expires_at, nbytes, request.prompt_tokens
        )
        self._keys_by_entry[answer.entry_id] = key
        self.nbytes += nbytes
        while len(self._copies) > self.bounds.max_entries or self.nbytes > self.bounds.max_bytes:
            self._drop(next(iter(self._copies)))
        return True

    # The change feed (exact_feed.py).

    def fresh(self, sent_at: float) -> None:
        """A poll sent at `sent_at` succeeded: every removal before then is applied."""
        self._contact = sent_at

    def removed(self, entry_ids: Iterable[str]) -> None:
        now = self._clock()
        for entry_id in entry_ids:
            self._tombstones[entry_id] = now
            self._tombstones.move_to_end(entry_id)
            key = self._keys_by_entry.get(entry_id)
            if key is not None:
                self._drop(key)
        self._prune_tombstones(now)

    def reset(self) -> None:
        """The feed cannot list what changed (a new epoch, a gap): drop everything, and refuse
        copies from calls that started before."""
        self._clear()

    def down(self) -> None:
        """The feed is unreachable: drop everything and serve nothing until it is back."""
        self._contact = None
        self._clear()

    def take_served(self) -> list[str]:
        served, self._served = self._served, []
        return served

    def _clear(self) -> None:
        self._generation += 1
        self._copies.clear()
        self._keys_by_entry.clear()
        self.nbytes = 0

    def _drop(self, key: str) -> None:
        found = self._copies.pop(key, None)
        if found is not None:
            self.nbytes -= found.nbytes
            if self._keys_by_entry.get(found.entry_id) == key:
                del self._keys_by_entry[found.entry_id]

    def _prune_tombstones(self, now: float) -> None:
        while self._tombstones:
            entry_id, when = next(iter(self._tombstones.items()))
            if now - when <= TOMBSTONE_S and len(self._tombstones) <= MAX_TOMBSTONES:
                return
            if now - when <= TOMBSTONE_S:
                # Forgetting a recent removal could let a late answer in: start a new
                # generation instead, so that no call in flight can admit anything.
                self._generation += 1
            del self._tombstones[entry_id]


def _answer_bytes(answer: CachedAnswer) -> int:
    size = len(answer.content.encode("utf-8")) + len(answer.model) + len(answer.entry_id)
    for choice in answer.choices:
        size += len(choice.content.encode("utf-8")) + len(choice.refusal.encode("utf-8"))
        size += sum(len(c.id) + len(c.name) + len(c.arguments) for c in choice.tool_calls)
        size += 64 * len(choice.logprobs)
    return size

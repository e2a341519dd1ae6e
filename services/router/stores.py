"""Cache stores that run after the answer has gone back to the caller.

The router hands each accepted answer to BackgroundStores instead of awaiting the cache's Store
(which embeds the prompt and writes the entry durably), so the caller does not wait for it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Hashable

from services.router.model import ChatRequest, StageUnavailable
from shared.errors import SluiceError

LOG = logging.getLogger(__name__)


class BackgroundStores:
    """Cache stores that run after the answer has gone back, with bounded concurrency.

    At most `concurrency` stores talk to the cache at once; up to `backlog` more wait for a
    slot. Beyond that, under sustained overload, a store is dropped rather than piling up
    memory. Nothing is lost silently: failures and drops are counted and logged, and `drain`
    (called at shutdown) waits for every pending store.

    A lookup waits (up to `visibility_s`) for the stores still running in its namespace whose
    question shares most of its content words, so that an answer returned before a request
    arrived can serve it: asking twice in a row, or a paraphrase right after the original,
    still hits. Waiting for every store of the namespace would chain unrelated requests one
    behind the other under load; the word overlap picks the few that could match.
    """

    def __init__(
        self, concurrency: int = 16, backlog: int = 1024, visibility_s: float = 0.25
    ) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._limit = concurrency + backlog
        self._visibility_s = visibility_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._by_key: dict[Hashable, dict[asyncio.Task[None], frozenset[str]]] = {}
        self.stored = 0
        self.failed = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def submit(
        self,
        store: Callable[[], Awaitable[object]],
        key: Hashable = None,
        words: frozenset[str] = frozenset(),
    ) -> None:
        if len(self._tasks) >= self._limit:
            self.dropped += 1
            LOG.warning("cache store dropped: %d stores already pending", len(self._tasks))
            return
        task = asyncio.get_running_loop().create_task(self._run(store))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if key is not None:
            self._by_key.setdefault(key, {})[task] = words
            task.add_done_callback(lambda done: self._forget(key, done))

    def _forget(self, key: Hashable, done: asyncio.Task[None]) -> None:
        tasks = self._by_key.get(key)
        if tasks is not None:
            tasks.pop(done, None)
            if not tasks:
                del self._by_key[key]

    async def settled(self, key: Hashable, words: frozenset[str] = frozenset()) -> None:
        """Waits for the pending stores under this key whose words overlap these, up to
        visibility_s; never raises their failures, and never cancels them."""
        pending = self._by_key.get(key)
        if not pending:
            return
        related = {task for task, theirs in pending.items() if _overlap(words, theirs)}
        if related:
            await asyncio.wait(related, timeout=self._visibility_s)

    async def _run(self, store: Callable[[], Awaitable[object]]) -> None:
        async with self._slots:
            try:
                await store()
            except (StageUnavailable, SluiceError) as error:
                self.failed += 1
                LOG.warning("cache store failed: %s", getattr(error, "reason", error))
            except Exception:
                # Nobody awaits this task, so an unexpected error must be logged here or it
                # would only surface as "exception never retrieved" at exit.
                self.failed += 1
                LOG.exception("cache store failed unexpectedly")
            else:
                self.stored += 1

    async def drain(self, timeout_s: float | None = None) -> None:
        """Waits for every pending store (or until timeout_s); stores submitted meanwhile too."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._tasks:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                LOG.warning("shutdown with %d cache stores still pending", len(self._tasks))
                return
            await asyncio.wait(set(self._tasks), timeout=left)


def store_key(request: ChatRequest) -> Hashable:
    """The cache namespace a request is matched in: tenant, model class, response format and
    every turn but the last (services/cache: only the last user turn is matched semantically).
    A coarser key than the cache's only costs a wait for an unrelated store."""
    return (
        request.tenant.tenant_id,
        request.model_class.name,
        request.turns[:-1],
        request.response_format,
    )


# Words that say nothing about what a question is about.
_STOPWORDS = frozenset({
    "the", "and", "for", "are", "was", "were", "what", "how", "why", "who", "whom", "when",
    "where", "which", "does", "did", "can", "could", "would", "should", "will", "you", "your",
    "with", "this", "that", "these", "those", "from", "have", "has", "not", "into", "about",
    "its", "there", "their", "they", "them", "our",
})  # fmt: skip
_WORD = re.compile(r"[a-z0-9]+")


def content_words(request: ChatRequest) -> frozenset[str]:
    """The last turn's words of three letters or more, less the stopwords."""
    text = request.turns[-1].content.lower() if request.turns else ""
    return frozenset(w for w in _WORD.findall(text) if len(w) > 2 and w not in _STOPWORDS)


def _overlap(mine: frozenset[str], theirs: frozenset[str]) -> bool:
    """Most of the shorter question's content words appear in the other: a paraphrase."""
    if not mine or not theirs:
        return mine == theirs
    return 2 * len(mine & theirs) >= min(len(mine), len(theirs))

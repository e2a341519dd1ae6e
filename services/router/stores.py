"""Cache stores that run after the answer has gone back to the caller.

The router hands each accepted answer to BackgroundStores instead of awaiting the cache's Store
(which embeds the prompt and writes the entry durably), so the caller does not wait for it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Hashable

from services.router.background import BackgroundJobs
from services.router.model import ChatRequest, StageUnavailable
from shared.errors import SluiceError


class BackgroundStores:
    """Cache stores that run after the answer has gone back, with bounded concurrency.

    At most `concurrency` stores talk to the cache at once; up to `backlog` more wait for a
    slot. Beyond that, under sustained overload, a store is dropped rather than piling up
    memory. Nothing is lost silently: failures and drops are counted and logged, and `drain`
    (called at shutdown) waits for every pending store (background.BackgroundJobs).

    A lookup waits (up to `visibility_s`) for the stores still running in its namespace whose
    question shares most of its content words, so that an answer returned before a request
    arrived can serve it: asking twice in a row, or a paraphrase right after the original,
    still hits. Waiting for every store of the namespace would chain unrelated requests one
    behind the other under load; the word overlap picks the few that could match.
    """

    def __init__(
        self, concurrency: int = 16, backlog: int = 1024, visibility_s: float = 0.25
    ) -> None:
        self._jobs = BackgroundJobs(
            "cache store", concurrency, backlog, expected=(StageUnavailable, SluiceError)
        )
        self._visibility_s = visibility_s
        self._by_key: dict[Hashable, dict[asyncio.Task[None], frozenset[str]]] = {}

    @property
    def pending(self) -> int:
        return self._jobs.pending

    @property
    def stored(self) -> int:
        return self._jobs.done

    @property
    def failed(self) -> int:
        return self._jobs.failed

    @property
    def dropped(self) -> int:
        return self._jobs.dropped

    def submit(
        self,
        store: Callable[[], Awaitable[object]],
        key: Hashable = None,
        words: frozenset[str] = frozenset(),
    ) -> None:
        task = self._jobs.start(store)
        if task is not None and key is not None:
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

    async def drain(self, timeout_s: float | None = None) -> None:
        """Waits for every pending store (or until timeout_s); stores submitted meanwhile too."""
        await self._jobs.drain(timeout_s)


def store_key(request: ChatRequest) -> Hashable:
    """The cache namespace a request is matched in: tenant, model class, response format, the
    tools offered and every turn but the last (services/cache: only the last user turn is
    matched semantically). A coarser key than the cache's only costs a wait for an unrelated
    store."""
    return (
        request.tenant.tenant_id,
        request.model_class.name,
        request.turns[:-1],
        request.response_format,
        request.tools,
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

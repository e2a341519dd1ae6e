"""Bounded per-verifier caches of what a verifier parses from a question text.

A stored question is compared with every lookup that lands near it, so parsing it once and
keeping the result saves most of a verifier's work. Bounded, because every distinct lookup
text would otherwise stay forever.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from services.cache.verifiers.text import Signals

DEFAULT_SIZE = 4096
T = TypeVar("T")


class TextCache(Generic[T]):
    """factory(text), kept for the `size` most recently used texts."""

    def __init__(self, factory: Callable[[str], T], size: int = DEFAULT_SIZE) -> None:
        self._factory = factory
        self._size = size
        self._items: OrderedDict[str, T] = OrderedDict()

    def __call__(self, text: str) -> T:
        found = self._items.get(text)
        if found is None:
            found = self._factory(text)
            self._items[text] = found
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(text)
        return found


class SignalsCache(TextCache[Signals]):
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        super().__init__(Signals, size)

"""A bounded per-verifier cache of parsed question signals.

A stored question is compared with every lookup that lands near it, so parsing it once and
keeping the result saves most of a verifier's work. Bounded, because every distinct lookup
text would otherwise stay forever.
"""

from __future__ import annotations

from collections import OrderedDict

from services.cache.verifiers.text import Signals

DEFAULT_SIZE = 4096


class SignalsCache:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[str, Signals] = OrderedDict()

    def __call__(self, text: str) -> Signals:
        signals = self._items.get(text)
        if signals is None:
            signals = Signals(text)
            self._items[text] = signals
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(text)
        return signals

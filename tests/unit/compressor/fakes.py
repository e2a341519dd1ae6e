"""Deterministic stand-ins for the embedding model and for strategies.

HashingEmbedder is a bag-of-words model: each content word lands in a bucket chosen by a stable
hash, so two texts are similar exactly when they share words. That is enough to test selection
logic without loading MiniLM.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from services.compressor.abstractive import Summary, SummaryUnavailable
from services.compressor.strategies import StrategyResult
from shared.chat import Turn

_WORD = re.compile(r"[a-z0-9]+")
_IGNORED = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "at",
        "and",
        "or",
        "is",
        "was",
        "were",
        "did",
        "does",
        "do",
        "what",
        "which",
        "who",
    ]
)


class HashingEmbedder:
    """Bag-of-words vectors with hashed buckets, L2-normalised; counts what it embeds."""

    def __init__(self, dim: int = 512, loaded: bool = True) -> None:
        self._dim = dim
        self._loaded = loaded
        self.calls: list[list[str]] = []

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        self._loaded = True

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls.append(list(texts))
        vectors = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                if word in _IGNORED:
                    continue
                bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest())
                vectors[row, bucket % self._dim] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)


class FixedStrategy:
    """A Strategy that returns preset turns, for testing the Compressor's decisions."""

    name = "fixed"

    def __init__(
        self, turns: tuple[Turn, ...] | None = None, cost_nano_usd: int = 0, ready: bool = True
    ) -> None:
        self._turns = turns
        self._cost = cost_nano_usd
        self._ready = ready
        self.ratios: list[float] = []
        self.deadlines: list[float | None] = []

    @property
    def ready(self) -> bool:
        return self._ready

    async def compress(
        self, turns: tuple[Turn, ...], target_ratio: float, deadline: float | None = None
    ) -> StrategyResult:
        self.ratios.append(target_ratio)
        self.deadlines.append(deadline)
        out = turns if self._turns is None else self._turns
        return StrategyResult(out, "fixed output", self._cost)


class FakeSummariser:
    """A Summariser that returns a preset summary and cost, or fails; records its calls."""

    def __init__(
        self, text: str = "short summary", cost_nano_usd: int = 1234, fail: str = ""
    ) -> None:
        self._text = text
        self._cost = cost_nano_usd
        self._fail = fail
        self.calls: list[tuple[str, str, int]] = []

    @property
    def model(self) -> str:
        return "Qwen/Qwen3-8B"

    async def summarise(
        self, text: str, question: str, max_tokens: int, deadline: float | None
    ) -> Summary:
        self.calls.append((text, question, max_tokens))
        if self._fail:
            raise SummaryUnavailable(self._fail)
        return Summary(self._text, self._cost)

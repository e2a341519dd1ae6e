"""Tiny, hand-written stand-ins for RouterBench rows and for the embedding model."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from services.router.learning.data import Item, Recorded
from services.router.learning.simulate import Case, prepare

DIM = 384

ARC_PROMPT = """Which gas do plants take in?
A) oxygen
B) carbon dioxide
C) helium
D) neon
Print only a single choice  from "A" or "B" or "C" or "D" without explanation.
Answer:
B

Which planet is closest to the Sun, and so takes the least time to complete one orbit, even
though it is not the hottest planet of the solar system because it has almost no atmosphere?
A) Venus
B) Mars
C) Mercury
D) Earth
Print only a single choice  from "A" or "B" or "C" or "D" without explanation.
Answer:"""

WINO_PROMPT = """Please answer with the letter of the correct answer.

Sam thanked Alex because _ had helped with the move.
A) Sam
B) Alex
Print only a single choice  from "A" or "B" without explanation. Answer:"""

CODE_PROMPT = "Write a function to find the intersection of two arrays."


class HashEmbedder:
    """Deterministic unit vectors from a hash of the text; equal texts, equal vectors."""

    def __init__(self, dim: int = DIM) -> None:
        self.dim = dim
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls.append(list(texts))
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            vector = np.random.default_rng(seed).standard_normal(self.dim)
            rows.append(vector / np.linalg.norm(vector))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)


def item(
    sample_id: str,
    prompt: str,
    answers: Mapping[str, tuple[str, bool | None, float]],
    task: str = "arc",
) -> Item:
    return Item(
        sample_id,
        task,
        prompt,
        {m: Recorded(text, correct, cost) for m, (text, correct, cost) in answers.items()},
    )


def cases(items: Sequence[Item]) -> list[Case]:
    return prepare(items, HashEmbedder())

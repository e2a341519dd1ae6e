"""Long last user turns: a semantic match compares only what the model reads in full, so two
requests sharing a document never serve each other's answers to different questions.

The embedder here reads only the first WINDOW words, as MiniLM reads only its first 254 word
pieces; without the split, every request below would embed its document alone."""

from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from services.cache.cache import CachePolicy, SemanticCache
from services.cache.keys import KEY_VERSION
from services.cache.model import HitKind
from services.cache.window import word_window
from shared.embedding.minilm import EmbeddingBatcher
from tests.unit.cache.fakes import FakeClock, HashingEmbedder, answer, ask

WINDOW = 40
Q1 = "what is the delivery time agreed in clause three"
Q2 = "who wrote the novel moby dick"
Q1_PARAPHRASE = "what delivery time is agreed in clause three"


class TruncatingEmbedder(HashingEmbedder):
    """Reads only the first `words` words of each text, like a model with a window."""

    def __init__(self, words: int) -> None:
        super().__init__()
        self.words = words

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return super().embed([" ".join(t.split()[: self.words]) for t in texts])


def document(words: int) -> str:
    """Clauses of 10 words each, one paragraph per clause."""
    clauses = [
        " ".join(f"clause{c} term{c * 10 + w}" for w in range(5)) for c in range(words // 10)
    ]
    return "\n\n".join(clauses)


def turn(doc: str, question: str, where: str) -> str:
    paragraphs = doc.split("\n\n")
    if where == "end":
        return f"{doc}\n\n{question}?"
    if where == "start":
        return f"{question}?\n\n{doc}"
    middle = len(paragraphs) // 2
    return "\n\n".join([*paragraphs[:middle], f"{question}?", *paragraphs[middle:]])


async def long_prompt_cache() -> SemanticCache:
    policy = CachePolicy(min_similarity=0.8, ttl_s=3600.0, max_entries=100)
    cache = SemanticCache(
        EmbeddingBatcher(TruncatingEmbedder(WINDOW)),
        policy,
        clock=FakeClock(),
        window=word_window(WINDOW),
    )
    await cache.start()
    return cache


def test_the_key_version_moved_with_the_split() -> None:
    assert KEY_VERSION >= 4


# Below, at and well above the window, in words of document.
@pytest.mark.parametrize("doc_words", [20, WINDOW, 10 * WINDOW])
@pytest.mark.parametrize("where", ["end", "start", "middle"])
async def test_a_shared_document_never_serves_another_question(doc_words: int, where: str) -> None:
    cache = await long_prompt_cache()
    doc = document(doc_words)
    stored = await cache.store(ask(turn(doc, Q1, where)), answer("Ten days."))

    other = await cache.lookup(ask(turn(doc, Q2, where)))
    assert other.kind is HitKind.MISS

    again = await cache.lookup(ask(turn(doc, Q1, where)))
    assert (again.kind, again.entry_id) == (HitKind.EXACT, stored.entry_id)


@pytest.mark.parametrize("doc_words", [20, WINDOW, 10 * WINDOW])
async def test_a_paraphrased_question_after_the_same_document_is_a_semantic_hit(
    doc_words: int,
) -> None:
    cache = await long_prompt_cache()
    doc = document(doc_words)
    stored = await cache.store(ask(turn(doc, Q1, "end")), answer("Ten days."))
    found = await cache.lookup(ask(turn(doc, Q1_PARAPHRASE, "end")))
    assert (found.kind, found.entry_id) == (HitKind.SEMANTIC, stored.entry_id)
    # Another document with the same question is another namespace.
    elsewhere = await cache.lookup(ask(turn(document(doc_words + 10), Q1, "end")))
    assert elsewhere.kind is HitKind.MISS


async def test_a_turn_with_no_window_that_fits_is_matched_exactly_only() -> None:
    cache = await long_prompt_cache()
    text = " ".join(f"word{i}" for i in range(3 * WINDOW))  # one line, no sentence end
    stored = await cache.store(ask(text), answer())
    assert (await cache.lookup(ask(text))).kind is HitKind.EXACT
    # The same words but the last: a bare cosine over the first WINDOW words would be 1.0.
    changed = await cache.lookup(ask(text.rsplit(" ", 1)[0] + " different"))
    assert changed.kind is HitKind.MISS
    namespace = cache.namespace(stored.namespace)
    assert namespace is not None and len(namespace.index) == 0  # no vector stored

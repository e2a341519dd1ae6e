"""How relevant each context chunk is to the question: hybrid retrieval over the chunks.

Two rankings of the chunks are fused by reciprocal rank fusion (Cormack, Clarke and Buettcher,
2009, "Reciprocal Rank Fusion outperforms Condorcet and individual Rank Learning Methods"):

* dense: cosine similarity of MiniLM vectors, the chunk scoring as its best window when it is
  longer than the model reads;
* lexical: Okapi BM25 over content words (stop words and prompt boilerplate removed), with the
  document frequencies taken from this prompt's chunks, so a word in every chunk, such as the
  document's subject, weighs almost nothing, and a name that appears twice counts more.

A chunk's fused score is the sum over the rankings of 1 / (RRF_K + rank), ties sharing their
average rank. Ranks, unlike raw scores, need no weight to put a cosine in [-1, 1] and an
unbounded BM25 sum on one scale; RRF_K = 60 is the paper's constant, not tuned here. Then each
chunk gains a share of its best neighbour's fused score (an answer sentence often starts "It
..." and needs the sentence before it).

Chosen on the development half of benchmarks/compression.py (hash buckets 0-4, all 121 L-Eval
NaturalQuestions and CUAD questions there, and 42 NQ-open prompts): against the earlier cosine
+ 0.3 x IDF-overlap score, the answer survived in 103 against 102 L-Eval questions at 4x, 94
against 91 at 8x, 113 at 2x for both, and in all 42 NQ-open prompts at every ratio for both.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float64]

# Reciprocal rank fusion's constant: a chunk ranked r-th in one list adds 1 / (RRF_K + r).
RRF_K = 60
# Okapi BM25's term-frequency saturation and length normalisation, at their usual values.
BM25_K1 = 1.2
BM25_B = 0.75
# A chunk gains NEIGHBOUR_WEIGHT x its best adjacent chunk's score, or NEIGHBOUR_TOP_WEIGHT x
# when that neighbour is one of the NEIGHBOUR_TOP_K best chunks of the prompt.
NEIGHBOUR_WEIGHT = 0.2
NEIGHBOUR_TOP_WEIGHT = 0.3
NEIGHBOUR_TOP_K = 3
# MiniLM reads at most 256 word pieces (~1,000 characters of English); longer chunks are
# embedded in windows and score as their best window.
EMBED_WINDOW_CHARS = 1000

WORD = re.compile(r"[a-z0-9]+(?:['\u2019][a-z]+)?")
# Function words, and prompt boilerplate that says nothing about what is asked.
STOPWORDS = frozenset(
    {
        "a", "an", "the", "and", "or", "but", "if", "then", "else", "of", "to", "in", "on", "at",
        "by", "for", "with", "from", "into", "onto", "over", "under", "about", "as", "is", "are",
        "was", "were", "be", "been", "being", "am", "do", "does", "did", "done", "have", "has",
        "had", "having", "it", "its", "this", "that", "these", "those", "there", "here", "what",
        "which", "who", "whom", "whose", "when", "where", "why", "how", "i", "me", "my", "we",
        "our", "you", "your", "he", "him", "his", "she", "her", "they", "them", "their", "not",
        "no", "nor", "so", "than", "too", "very", "can", "could", "will", "would", "shall",
        "should", "may", "might", "must", "also", "just", "only", "any", "all", "some", "each",
        "such", "more", "most", "other", "own", "same", "up", "down", "out", "off", "again",
        "further", "once", "answer", "question", "please", "tell", "give", "using", "use", "based",
        "text", "above", "below", "following"
    }
)  # fmt: skip


def content_tokens(text: str) -> list[str]:
    """The words of a text that say what it is about, repeats kept, in order."""
    return [word for word in WORD.findall(text.lower()) if word not in STOPWORDS]


def content_words(text: str) -> frozenset[str]:
    return frozenset(content_tokens(text))


def bm25(question: str, chunks: Sequence[str]) -> Scores:
    """Okapi BM25 of each chunk for the question's content words, IDF over these chunks."""
    asked = content_words(question)
    documents = [content_tokens(chunk) for chunk in chunks]
    if not asked or not documents:
        return np.zeros(len(documents))
    average_length = sum(len(d) for d in documents) / len(documents) or 1.0
    frequency = Counter(word for d in documents for word in asked.intersection(d))
    # Lucene's IDF: like Robertson-Sparck Jones, but never negative for common words.
    idf = {
        word: math.log(1 + (len(documents) - frequency[word] + 0.5) / (frequency[word] + 0.5))
        for word in asked
    }
    scores = np.zeros(len(documents))
    for n, document in enumerate(documents):
        norm = BM25_K1 * (1 - BM25_B + BM25_B * len(document) / average_length)
        counts = Counter(word for word in document if word in asked)
        scores[n] = sum(idf[w] * f * (BM25_K1 + 1) / (f + norm) for w, f in counts.items())
    return scores


def average_ranks(scores: Scores) -> Scores:
    """0-based ranks, best first; tied scores share the average of the ranks they span."""
    _, inverse, counts = np.unique(-scores, return_inverse=True, return_counts=True)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.asarray((starts + (counts - 1) / 2)[inverse.reshape(-1)], dtype=np.float64)


def fused(*rankings: Scores) -> Scores:
    """Reciprocal rank fusion of several scorings of the same chunks."""
    return np.asarray(sum(1.0 / (RRF_K + average_ranks(s)) for s in rankings), dtype=np.float64)


def windows(text: str) -> list[str]:
    """Splits a long chunk at line breaks into pieces of at most EMBED_WINDOW_CHARS."""
    if len(text) <= EMBED_WINDOW_CHARS:
        return [text]
    pieces: list[str] = []
    for line in text.splitlines(keepends=True):
        pieces.extend(
            line[k : k + EMBED_WINDOW_CHARS] for k in range(0, len(line), EMBED_WINDOW_CHARS)
        )
    parts = [""]
    for piece in pieces:
        if len(parts[-1]) + len(piece) > EMBED_WINDOW_CHARS:
            parts.append("")
        parts[-1] += piece
    return [w for w in parts if w.strip()] or [text[:EMBED_WINDOW_CHARS]]


def neighbour_bonus(base: Scores, positions: Sequence[tuple[int, int]]) -> Scores:
    """Lifts each chunk by a share of its best adjacent chunk's score (see the weights).

    `positions` are (turn, position in turn) of each scored chunk; chunks of other turns, or
    not scored (pinned), are not neighbours.
    """
    bonus = np.zeros(len(positions))
    where = {place: n for n, place in enumerate(positions)}
    top = {int(n) for n in np.argsort(-base, kind="stable")[:NEIGHBOUR_TOP_K]}
    for n, (turn, position) in enumerate(positions):
        for step in (-1, 1):
            neighbour = where.get((turn, position + step))
            if neighbour is None:
                continue
            weight = NEIGHBOUR_TOP_WEIGHT if neighbour in top else NEIGHBOUR_WEIGHT
            bonus[n] = max(bonus[n], weight * max(float(base[neighbour]), 0.0))
    return bonus

"""Compression strategies behind one seam, and the query-aware extractive one.

`Strategy` is the seam the others plug into (dedup.py, abstractive.py, history.py) without the
servicer changing; the Compressor picks one per request from the caller's policy.

`ExtractiveStrategy` follows the coarse, question-aware step of LongLLMLingua (Jiang et al.,
2023, "LongLLMLingua: Accelerating and Enhancing LLMs in Long Context Scenarios via Prompt
Compression"), scoring chunks by embedding similarity to the question where that paper uses a
small LM's perplexity. What counts as the question, and what is protected:

* The question lives in the last user turn. When that turn is short (at most
  QUESTION_MAX_TOKENS), all of it is the question. When it is long, the question is its tail:
  chunks taken from the end back to the first one that asks something ("?"), staying within
  QUESTION_MAX_TOKENS and within the last paragraph once it says enough (a bare "Answer:" does
  not). If that tail asks nothing but the turn opens with a short paragraph that does, the
  opening is the question ("Answer using the text below: who ...?" followed by the text).
* The question is never dropped. Turns shorter than KEEP_WHOLE_BELOW_TOKENS are kept verbatim:
  a short system prompt is instructions, and a short turn is not worth cutting.
* Everything else, from turns of any role, is context: it is chunked (chunking.py) and each
  chunk is scored for relevance to the question by hybrid retrieval, dense MiniLM similarity
  and BM25 fused by their ranks, plus a share of its best neighbour's score (relevance.py).
  The best chunks are kept until target_ratio * context tokens is spent and emitted in their
  original order. Every compressed turn keeps at least one chunk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from services.compressor.chunking import Chunk, join_chunks, split_chunks
from services.compressor.relevance import bm25, content_words, fused, neighbour_bonus
from services.compressor.relevance import windows as text_windows
from services.compressor.verbatim import verbatim_only, with_content
from shared.chat import Role, Turn
from shared.embedding.minilm import Embedder
from shared.errors import DeadlineExceeded
from shared.tokens import TokenCounter

KEEP_WHOLE_BELOW_TOKENS = 200
QUESTION_MAX_TOKENS = 256
# A question tail with fewer content words than this ("Answer:") does not yet say what is
# asked, so the search for the question goes on into the paragraph before it.
QUESTION_MIN_WORDS = 3
# Characters in the first slice embedded under a deadline (~1,000 tokens, ~0.5 s of model time
# on one core); later slices double while the pace says they end in time. Counted in
# characters, not texts, as the model's time grows with the tokens.
EMBED_SLICE_CHARS = 4000
# Share of the time left at the start that is kept for selecting, rebuilding and answering
# when embedding is cut short by the caller's deadline, and its floor in seconds.
DEADLINE_MARGIN = 0.1
MIN_MARGIN_S = 0.1
# A slice's time is predicted from the pace so far times this: texts differ in how much the
# model pads them, and an overrun costs the whole compression.
PACE_SAFETY = 1.5
# The dense score of a chunk left without a vector: below any cosine, so all such chunks tie
# for the last dense rank.
NO_VECTOR = -2.0


@dataclass(frozen=True)
class StrategyResult:
    """A strategy's output: the new turns and a one-line account of what it did."""

    turns: tuple[Turn, ...]
    detail: str
    # What running the strategy cost (an LLM call would); 0 for local strategies.
    cost_nano_usd: int = 0
    # The strategy that really produced the turns, when it fell back to another; "" if itself.
    ran: str = ""


class Strategy(Protocol):
    """Shrinks a conversation towards target_ratio of its compressible tokens."""

    @property
    def name(self) -> str: ...

    @property
    def ready(self) -> bool: ...

    async def compress(
        self, turns: tuple[Turn, ...], target_ratio: float, deadline: float | None = None
    ) -> StrategyResult:
        """Compresses turns; raises DeadlineExceeded past `deadline` (time.monotonic())."""
        ...


@dataclass
class _Plan:
    """How one turn is treated: verbatim, or chunked with some chunks pinned."""

    turn: Turn
    chunks: list[Chunk] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    pinned: set[int] = field(default_factory=set)

    @property
    def verbatim(self) -> bool:
        return not self.chunks


@dataclass(frozen=True)
class _Candidate:
    """A droppable chunk: chunk `position` of turn `turn`."""

    turn: int
    position: int
    tokens: int


class ExtractiveStrategy:
    """Keeps the context chunks most similar to the question; see the module docstring."""

    name = "extractive"

    def __init__(self, embedder: Embedder, counter: TokenCounter) -> None:
        self._embedder = embedder
        self._counter = counter

    @property
    def ready(self) -> bool:
        return self._embedder.loaded

    async def compress(
        self, turns: tuple[Turn, ...], target_ratio: float, deadline: float | None = None
    ) -> StrategyResult:
        # Chunking, token counting and embedding are all CPU-bound: keep them off the loop.
        return await asyncio.to_thread(self.compress_blocking, turns, target_ratio, deadline)

    def compress_blocking(
        self, turns: tuple[Turn, ...], target_ratio: float, deadline: float | None = None
    ) -> StrategyResult:
        question_at = last_user_index(turns)
        if question_at is None:
            return StrategyResult(turns, "no user turn to take the question from")
        plans = [self._plan(turn, index == question_at) for index, turn in enumerate(turns)]
        candidates = [
            _Candidate(t, p, plan.tokens[p])
            for t, plan in enumerate(plans)
            for p in range(len(plan.chunks))
            if p not in plan.pinned
        ]
        if not candidates:
            return StrategyResult(turns, "nothing to drop: every turn is short or the question")
        context_tokens = sum(c.tokens for c in candidates)
        budget = int(target_ratio * context_tokens)
        question = _question_text(plans[question_at])
        scores, dense = self._score(question, plans, candidates, deadline)
        kept = _select(plans, candidates, scores, budget)
        kept_tokens = sum(candidates[n].tokens for n in kept)
        cut_short = (
            ""
            if dense == len(candidates)
            else f"; embedded {dense} of {len(candidates)} chunks before the deadline, "
            "the rest ranked by BM25 alone"
        )
        return StrategyResult(
            _rebuild(plans, candidates, kept),
            f"kept {kept_tokens} of {context_tokens} context tokens "
            f"({len(kept)} of {len(candidates)} chunks){cut_short}",
        )

    def split_question(self, turn: Turn) -> tuple[str, str]:
        """(context, question) of a last user turn, as extraction sees them; context may be ""."""
        plan = self._plan(turn, True)
        if plan.verbatim:
            return "", turn.content
        context = join_chunks(c for p, c in enumerate(plan.chunks) if p not in plan.pinned)
        return context, _question_text(plan)

    def _plan(self, turn: Turn, is_question: bool) -> _Plan:
        if verbatim_only(turn):
            return _Plan(turn)
        total = self._counter.count(turn.content)
        short = total <= QUESTION_MAX_TOKENS if is_question else total < KEEP_WHOLE_BELOW_TOKENS
        if short:
            return _Plan(turn)
        chunks = split_chunks(turn.content)
        tokens = [self._counter.count(chunk.text) for chunk in chunks]
        pinned = _question_part(chunks, tokens) if is_question else set()
        return _Plan(turn, chunks, tokens, pinned)

    def _score(
        self,
        question: str,
        plans: Sequence[_Plan],
        candidates: Sequence[_Candidate],
        deadline: float | None,
    ) -> tuple[npt.NDArray[np.float64], int]:
        """Each candidate's relevance, and how many candidates got a dense (vector) score."""
        chunk_texts = [plans[c.turn].chunks[c.position].text for c in candidates]
        lexical = bm25(question, chunk_texts)
        # Chunks are embedded best-lexical first: when the deadline cuts embedding short, the
        # chunks left without a vector are those the question's words point to least.
        texts = [question]
        owners: list[int] = []
        for n in np.argsort(-lexical, kind="stable"):
            windows = text_windows(chunk_texts[n])
            texts.extend(windows)
            owners.extend([int(n)] * len(windows))
        vectors = self._embed(texts, deadline)
        done = len(vectors) - 1
        similarity = np.full(len(candidates), NO_VECTOR)
        np.maximum.at(similarity, owners[:done], vectors[1:] @ vectors[0])
        scores = fused(similarity, lexical)
        bonus = neighbour_bonus(scores, [(c.turn, c.position) for c in candidates])
        return scores + bonus, int(np.count_nonzero(similarity > NO_VECTOR))

    def _embed(self, texts: Sequence[str], deadline: float | None) -> npt.NDArray[np.float32]:
        """Embeds the texts, or as many leading ones as the caller's deadline allows (the
        question's at least).

        Without a deadline, one call: the embedder sorts the texts by length, so few are padded.
        With one, in slices of growing size, each no bigger than what the pace of the slices
        before it says will end before the margin kept for selecting and answering: a cold 30k
        token document takes longer to embed than the router waits, and a compression on the
        vectors there are beats none. A caller whose deadline has passed before the question
        is embedded has gone, and gets DeadlineExceeded rather than keeping the model busy.
        """
        if deadline is None:
            return self._embedder.embed(texts)
        started = time.monotonic()
        finish_by = deadline - max(MIN_MARGIN_S, DEADLINE_MARGIN * (deadline - started))
        parts: list[npt.NDArray[np.float32]] = []
        spent_s, done_chars, limit, start = 0.0, 0, float(EMBED_SLICE_CHARS), 0
        while start < len(texts):
            now = time.monotonic()
            if parts:
                pace = PACE_SAFETY * max(spent_s, 1e-6) / done_chars
                affordable = (finish_by - now) / pace
                limit = min(2 * limit, affordable)
                if limit < len(texts[start]):
                    break
            elif now > deadline:
                raise DeadlineExceeded("compression ran past the request's deadline")
            end = _slice_end(texts, start, limit)
            parts.append(self._embedder.embed(texts[start:end]))
            spent_s += time.monotonic() - now
            done_chars += sum(len(text) for text in texts[start:end])
            start = end
        return np.concatenate(parts)


def _slice_end(texts: Sequence[str], start: int, max_chars: float) -> int:
    """End of the run of texts from `start` within max_chars characters (one text at least)."""
    end, chars = start + 1, len(texts[start])
    while end < len(texts) and chars + len(texts[end]) <= max_chars:
        chars += len(texts[end])
        end += 1
    return end


def last_user_index(turns: Sequence[Turn]) -> int | None:
    for index in range(len(turns) - 1, -1, -1):
        if turns[index].role is Role.USER:
            return index
    return None


def _asks(chunk: Chunk) -> bool:
    return not chunk.kind.structural and "?" in chunk.text


def _question_part(chunks: Sequence[Chunk], tokens: Sequence[int]) -> set[int]:
    """Positions of the chunks of a long last user turn that form the question."""
    pinned: list[int] = []
    total = 0
    for i in range(len(chunks) - 1, -1, -1):
        if not pinned and tokens[i] > QUESTION_MAX_TOKENS:
            continue  # a long trailing code block or table is material, not the question
        said = len(content_words(" ".join(chunks[p].text for p in pinned)))
        new_block = bool(pinned) and chunks[i].block != chunks[pinned[-1]].block
        if (new_block and said >= QUESTION_MIN_WORDS) or total + tokens[i] > QUESTION_MAX_TOKENS:
            break
        pinned.append(i)
        total += tokens[i]
        if _asks(chunks[i]):
            break
    if not pinned:
        # Every chunk is longer than a question can be; protect the last one rather than none.
        return {len(chunks) - 1}
    if not any(_asks(chunks[p]) for p in pinned):
        opening = [p for p, chunk in enumerate(chunks) if chunk.block == chunks[0].block]
        if (
            not set(opening) & set(pinned)
            and any(_asks(chunks[p]) for p in opening)
            and sum(tokens[p] for p in opening) <= QUESTION_MAX_TOKENS
        ):
            pinned.extend(opening)
    return set(pinned)


def _question_text(plan: _Plan) -> str:
    if plan.verbatim:
        return plan.turn.content
    return " ".join(plan.chunks[p].text for p in sorted(plan.pinned))


def _select(
    plans: Sequence[_Plan],
    candidates: Sequence[_Candidate],
    scores: npt.NDArray[np.float64],
    budget: int,
) -> set[int]:
    """Greedy by score: what fits in the budget, after one chunk for every unpinned turn."""
    order = [int(n) for n in np.argsort(-scores, kind="stable")]
    kept: set[int] = set()
    used = 0
    covered = {t for t, plan in enumerate(plans) if plan.pinned}
    for n in order:
        # An emptied turn would break the conversation's shape, so its best chunk stays even
        # when that overshoots the budget a little.
        if candidates[n].turn not in covered:
            covered.add(candidates[n].turn)
            kept.add(n)
            used += candidates[n].tokens
    for n in order:
        if n not in kept and used + candidates[n].tokens <= budget:
            kept.add(n)
            used += candidates[n].tokens
    return kept


def _rebuild(
    plans: Sequence[_Plan], candidates: Sequence[_Candidate], kept: set[int]
) -> tuple[Turn, ...]:
    positions: list[set[int]] = [set(plan.pinned) for plan in plans]
    for n in kept:
        positions[candidates[n].turn].add(candidates[n].position)
    turns = []
    for plan, keep in zip(plans, positions, strict=True):
        if plan.verbatim:
            turns.append(plan.turn)
            continue
        content = join_chunks(plan.chunks[p] for p in sorted(keep))
        turns.append(with_content(plan.turn, content))
    return tuple(turns)

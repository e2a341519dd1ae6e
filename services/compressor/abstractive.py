"""Abstractive compression: a cheap model rewrites the context into a short summary.

The summary is asked to keep every name, number and date the question could need (the seed's
approach, and what LLMLingua's authors compare against as "selective context by summary"). It
costs a model call, which is counted in the result's cost so that the Compressor's pays-for-
itself check and the caller's cost breakdown both see it. When the summary cannot be had (the
dispatcher is down, the call times out, the model returns nothing useful), the strategy falls
back to query-aware extraction and says so, rather than failing the request.

The model is reached through the Summariser protocol; summariser.py implements it over the
dispatcher's gRPC API, so this module knows nothing of gRPC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.compressor.strategies import (
    KEEP_WHOLE_BELOW_TOKENS,
    ExtractiveStrategy,
    StrategyResult,
    last_user_index,
)
from services.compressor.verbatim import verbatim_only, with_content
from shared.chat import Role, Turn
from shared.tokens import TokenCounter

# Summaries shorter than this say too little to be worth a call.
MIN_SUMMARY_TOKENS = 32

INSTRUCTIONS = (
    "You compress context for another assistant. Rewrite the context below as briefly as you "
    "can, in at most {tokens} tokens. Keep every name, number, date, quantity and quoted "
    "phrase that could help answer the question, word for word. Output only the compressed "
    "context, with no preamble."
)


@dataclass(frozen=True)
class Summary:
    """A summary and what the call that wrote it cost."""

    text: str
    cost_nano_usd: int


class SummaryUnavailable(Exception):
    """The summary could not be had; the message says why."""


class Summariser(Protocol):
    """Writes a question-aware summary of `text` in at most `max_tokens` tokens."""

    @property
    def model(self) -> str: ...

    async def summarise(
        self, text: str, question: str, max_tokens: int, deadline: float | None
    ) -> Summary:
        """Raises SummaryUnavailable when no usable summary came back."""
        ...


class AbstractiveStrategy:
    """Summarises each long context turn; falls back to extraction on failure."""

    name = "abstractive"

    def __init__(
        self, summariser: Summariser, extractive: ExtractiveStrategy, counter: TokenCounter
    ) -> None:
        self._summariser = summariser
        self._extractive = extractive
        self._counter = counter

    @property
    def ready(self) -> bool:
        # Extraction is the fallback, so it must be able to run.
        return self._extractive.ready

    @property
    def model(self) -> str:
        return self._summariser.model

    async def compress(
        self, turns: tuple[Turn, ...], target_ratio: float, deadline: float | None = None
    ) -> StrategyResult:
        question_at = last_user_index(turns)
        if question_at is None:
            return StrategyResult(turns, "no user turn to take the question from")
        parts = await asyncio.to_thread(self._split, turns, question_at)
        asked = parts[question_at]
        question = asked[1] if asked is not None else turns[question_at].content
        jobs = {
            index: self._summarise(split[0], question, target_ratio, deadline)
            for index, split in enumerate(parts)
            if split is not None and split[0]
        }
        if not jobs:
            return StrategyResult(turns, "nothing to summarise: every turn is short")
        results = await asyncio.gather(*jobs.values(), return_exceptions=True)
        spent = sum(r.cost_nano_usd for r in results if isinstance(r, Summary))
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            if not isinstance(failure, SummaryUnavailable):
                raise failure
            fallback = await self._extractive.compress(turns, target_ratio, deadline)
            return StrategyResult(
                fallback.turns,
                f"abstractive failed ({failure}); fell back to extractive: {fallback.detail}",
                spent + fallback.cost_nano_usd,
                ran="extractive",
            )
        summaries = {i: r for i, r in zip(jobs, results, strict=True) if isinstance(r, Summary)}
        return StrategyResult(
            _rebuild(turns, parts, summaries),
            f"summarised {len(jobs)} turns with {self._summariser.model}",
            spent,
        )

    def _split(self, turns: Sequence[Turn], question_at: int) -> list[tuple[str, str] | None]:
        """(context, kept text) per turn; None for turns kept whole (short, or system)."""
        parts: list[tuple[str, str] | None] = []
        for index, turn in enumerate(turns):
            if verbatim_only(turn):
                parts.append(None)
            elif index == question_at:
                parts.append(self._extractive.split_question(turn))
            elif (
                # A system prompt is instructions: a paraphrase could change what is asked.
                turn.role is not Role.SYSTEM
                and self._counter.count(turn.content) >= KEEP_WHOLE_BELOW_TOKENS
            ):
                parts.append((turn.content, ""))
            else:
                parts.append(None)
        return parts

    async def _summarise(
        self, context: str, question: str, target_ratio: float, deadline: float | None
    ) -> Summary:
        tokens = await asyncio.to_thread(self._counter.count, context)
        budget = max(MIN_SUMMARY_TOKENS, int(target_ratio * tokens))
        summary = await self._summariser.summarise(context, question, budget, deadline)
        if not summary.text.strip():
            raise SummaryUnavailable(f"{self._summariser.model} returned an empty summary")
        return summary


def _rebuild(
    turns: Sequence[Turn],
    parts: Sequence[tuple[str, str] | None],
    summaries: dict[int, Summary],
) -> tuple[Turn, ...]:
    out = []
    for index, turn in enumerate(turns):
        split = parts[index]
        if index not in summaries or split is None:
            out.append(turn)
            continue
        kept = split[1]
        content = summaries[index].text.strip() + (f"\n\n{kept}" if kept else "")
        out.append(with_content(turn, content))
    return tuple(out)

"""Conversation-history trimming: keep the system prompt and the last turns, summarise the rest.

Long chats resend every earlier turn on every call, and the old turns matter less than the
recent ones. The leading system turns (instructions) and the last `keep_last_turns` turns stay
verbatim. The turns in between are folded into one system turn, "Summary of the earlier
conversation", written by the abstractive summariser when one is configured and reachable, and
otherwise by query-aware extraction from those turns against the latest question.

The fold ends before the first turn that must stay verbatim (verbatim.py): a tool call, its
result, or an image. From there on every turn is kept, so no tool result loses the call it
answers and no image is turned into text.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from services.compressor.abstractive import MIN_SUMMARY_TOKENS, Summariser, SummaryUnavailable
from services.compressor.strategies import ExtractiveStrategy, StrategyResult, last_user_index
from services.compressor.verbatim import verbatim_only
from shared.chat import Role, Turn
from shared.tokens import TokenCounter

SUMMARY_HEADER = "Summary of the earlier conversation:"


class HistoryStrategy:
    """Trims history to system + summary + last turns; see the module docstring."""

    name = "history"

    def __init__(
        self,
        extractive: ExtractiveStrategy,
        counter: TokenCounter,
        summariser: Summariser | None = None,
    ) -> None:
        self._extractive = extractive
        self._counter = counter
        self._summariser = summariser

    @property
    def ready(self) -> bool:
        return self._extractive.ready

    async def trim(
        self,
        turns: tuple[Turn, ...],
        target_ratio: float,
        keep_last_turns: int,
        deadline: float | None = None,
    ) -> StrategyResult:
        head = _leading_system(turns)
        middle_end = max(head, len(turns) - max(keep_last_turns, 1))
        middle_end = next(
            (i for i in range(head, middle_end) if verbatim_only(turns[i])), middle_end
        )
        older = turns[head:middle_end]
        if not older:
            return StrategyResult(
                turns,
                f"nothing older than the last {keep_last_turns} turns and the tool calls, "
                "tool results and images, which stay verbatim",
            )
        at = last_user_index(turns)
        question = turns[at].content if at is not None else ""
        transcript = "\n\n".join(f"{turn.role.value}: {turn.content}" for turn in older)
        summary, cost, how = await self._summary(transcript, question, target_ratio, deadline)
        folded = Turn(Role.SYSTEM, f"{SUMMARY_HEADER}\n{summary}")
        return StrategyResult(
            (*turns[:head], folded, *turns[middle_end:]),
            f"kept {head} system and the last {len(turns) - middle_end} turns; "
            f"{len(older)} older turns {how}",
            cost,
        )

    async def compress(
        self, turns: tuple[Turn, ...], target_ratio: float, deadline: float | None = None
    ) -> StrategyResult:
        return await self.trim(turns, target_ratio, 0, deadline)

    async def _summary(
        self, transcript: str, question: str, target_ratio: float, deadline: float | None
    ) -> tuple[str, int, str]:
        """(summary, cost, how it was made), abstractive first, extraction as the fallback."""
        why = "no summariser is configured"
        if self._summariser is not None:
            tokens = await asyncio.to_thread(self._counter.count, transcript)
            budget = max(MIN_SUMMARY_TOKENS, int(target_ratio * tokens))
            try:
                summary = await self._summariser.summarise(transcript, question, budget, deadline)
            except SummaryUnavailable as error:
                why = f"the summary failed ({error})"
            else:
                if summary.text.strip():
                    how = f"summarised by {self._summariser.model}"
                    return summary.text.strip(), summary.cost_nano_usd, how
                why = "the summary came back empty"
        # Extraction against the latest question; the transcript is the context turn.
        pair = (Turn(Role.ASSISTANT, transcript), Turn(Role.USER, question or "summary"))
        result = await self._extractive.compress(pair, target_ratio, deadline)
        return result.turns[0].content, 0, f"extracted ({why})"


def _leading_system(turns: Sequence[Turn]) -> int:
    count = 0
    while count < len(turns) and turns[count].role is Role.SYSTEM:
        count += 1
    return count

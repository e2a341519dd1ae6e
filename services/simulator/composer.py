"""How the simulator answers a chat request, for the chat endpoint and the Batch API alike.

A replayed model serves what was recorded, as text, whatever the request's tools or response
format: the recording is all the data holds. Scenario models build each of the `n` choices in
choices.py. `stop`, `max_tokens` and the token logprobs apply to both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.simulator.answers import AnswerBook, cap_answer
from services.simulator.choices import Choice, ChoiceMaker, apply_stop, text_choice
from services.simulator.logprobs import logprobs_json, token_logprobs
from services.simulator.replay import ReplayBook
from services.simulator.request import IMAGE_TOKENS, ChatRequest
from services.simulator.scenario import Scenario
from shared.tokens import TokenCounter

LogprobEntries = list[tuple[str, float]]


@dataclass(frozen=True)
class Composed:
    """A reply's choices, with their token logprobs when asked for, and the recorded USD cost
    (replay only)."""

    choices: tuple[Choice, ...]
    cost_usd: float | None = None
    logprobs: tuple[LogprobEntries, ...] | None = None

    @property
    def completion_tokens(self) -> int:
        return sum(choice.completion_tokens for choice in self.choices)


class Composer:
    def __init__(self, scenario: Scenario, replay: ReplayBook | None, tokens: TokenCounter) -> None:
        self._scenario = scenario
        self._replay = replay
        self._tokens = tokens
        self._maker = ChoiceMaker(AnswerBook(scenario.rules, tokens), tokens)

    def compose(self, chat: ChatRequest) -> Composed | None:
        """The reply's choices: a recording for replay models, else packed, tool-call, JSON,
        rule or synthetic answers; None when nothing is recorded."""
        cost_usd = None
        if self._replay is not None and self._replay.serves(chat.model):
            recording = self._replay.lookup(chat.last_user_text(), chat.model)
            if recording is None:
                return None
            # A cut recording keeps its recorded cost: the data has no input/output split.
            answer = cap_answer(self._tokens, recording.response, chat.max_tokens)
            choices = [text_choice(index, answer) for index in range(chat.n)]
            cost_usd = recording.cost_usd
        else:
            model = self._scenario.models[chat.model]
            choices = [self._maker.choice(chat, model, index) for index in range(chat.n)]
        choices = [apply_stop(self._tokens, choice, chat.stop) for choice in choices]
        return Composed(tuple(choices), cost_usd, self._logprobs(chat, choices))

    def _logprobs(
        self, chat: ChatRequest, choices: list[Choice]
    ) -> tuple[LogprobEntries, ...] | None:
        if not chat.logprobs:
            return None
        prompt = chat.last_user_text()
        return tuple(
            token_logprobs(chat.model, prompt, choice.said, choice.unsure) for choice in choices
        )


def prompt_tokens(tokens: TokenCounter, chat: ChatRequest) -> int:
    """cl100k tokens of every turn, tool calls and tool definitions, plus IMAGE_TOKENS an image."""
    return tokens.count_chat(chat.prompt_texts()) + IMAGE_TOKENS * chat.image_count()


def whole_logprobs(chat: ChatRequest, composed: Composed) -> list[dict[str, Any]] | None:
    """Each choice's `logprobs` object for a whole (non-streamed) reply, or None."""
    if composed.logprobs is None:
        return None
    return [
        logprobs_json(entries, chat.top_logprobs, choice.refusal is not None)
        for choice, entries in zip(composed.choices, composed.logprobs, strict=True)
    ]

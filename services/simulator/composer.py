"""How the simulator answers a chat request, for the chat endpoint and the Batch API alike."""

from __future__ import annotations

from services.simulator.answers import Answer, AnswerBook, cap_answer
from services.simulator.packed import PackedAnswers
from services.simulator.replay import ReplayBook
from services.simulator.scenario import Scenario
from services.simulator.wire import ChatRequest
from shared.tokens import TokenCounter


class Composer:
    def __init__(self, scenario: Scenario, replay: ReplayBook | None, tokens: TokenCounter) -> None:
        self._scenario = scenario
        self._replay = replay
        self._tokens = tokens
        self._book = AnswerBook(scenario.rules, tokens)
        # The batcher's packed prompts get a JSON array of answers (simulator/packed.py).
        self._packed = PackedAnswers(self._book, tokens)

    def compose(self, chat: ChatRequest) -> tuple[Answer, float | None] | None:
        """The answer and its recorded USD cost (replay only): a recording for replay models,
        else a packed, rule or synthetic answer; None when nothing is recorded."""
        prompt = chat.last_user_text()
        if self._replay is not None and self._replay.serves(chat.model):
            recording = self._replay.lookup(prompt, chat.model)
            if recording is None:
                return None
            # A cut recording keeps its recorded cost: the data has no input/output split.
            answer = cap_answer(self._tokens, recording.response, chat.max_tokens)
            return answer, recording.cost_usd
        model = self._scenario.models[chat.model]
        packed = self._packed.answer(model, prompt, chat.max_tokens)
        return packed or self._book.answer(model, prompt, chat.max_tokens), None

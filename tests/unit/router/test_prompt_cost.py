"""The prompt cost estimator the cascade prices tiers with."""

from __future__ import annotations

from collections.abc import Iterable

from services.router.pipeline import prompt_cost_estimator
from shared.chat import Role, Turn
from shared.pricing import TokenUsage
from shared.tokens import TokenCounter
from tests.unit.router.fixtures import catalogue


class CountingTokens(TokenCounter):
    """A real counter that also says how many prompts it counted."""

    def __init__(self) -> None:
        super().__init__()
        self.chats = 0

    def count_chat(self, contents: Iterable[str]) -> int:
        self.chats += 1
        return super().count_chat(contents)


def test_one_prompt_priced_on_every_tier_is_counted_once() -> None:
    tokens, prices = CountingTokens(), catalogue()
    estimate = prompt_cost_estimator(prices, tokens)
    turns = (Turn(Role.USER, "How do I learn to play the guitar well?"),)
    models = ["cheap", "mid", "top"]
    costs = [estimate(model, turns) for model in models]
    assert tokens.chats == 1
    prompt = TokenCounter().count_chat(t.content for t in turns)
    assert costs == [prices.cost_nano_usd(m, TokenUsage(prompt, 0)) for m in models]


def test_other_turns_are_counted_afresh() -> None:
    tokens, prices = CountingTokens(), catalogue()
    estimate = prompt_cost_estimator(prices, tokens)
    short = (Turn(Role.USER, "Hi"),)
    long = (Turn(Role.USER, "a much longer question about the history of the guitar " * 20),)
    assert estimate("top", long) > estimate("top", short)
    # Equal turns in a new tuple (a compressed prompt, the next request) are counted again.
    estimate("top", (Turn(Role.USER, "Hi"),))
    assert tokens.chats == 3

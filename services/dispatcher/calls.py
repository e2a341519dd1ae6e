"""Domain types of a dispatched call and its answer."""

from __future__ import annotations

from dataclasses import dataclass

from shared.chat import (
    NO_TOOLS,
    TEXT_FORMAT,
    Choice,
    ChoiceDelta,
    Finish,
    ResponseFormat,
    Sampling,
    ToolSet,
    Turn,
)
from shared.pricing import TokenUsage


@dataclass(frozen=True)
class ModelRequest:
    """One call to one concrete model."""

    model: str
    turns: tuple[Turn, ...]
    sampling: Sampling
    preferred_region: str = ""
    tier: int = 0
    response_format: ResponseFormat = TEXT_FORMAT
    # Ask the provider for the answer's token logprobs (the router's `logprob` gate).
    logprobs: bool = False
    tools: ToolSet = NO_TOOLS
    # The caller's end user, passed on as OpenAI's `user`.
    end_user: str = ""


@dataclass(frozen=True)
class LogprobSummary:
    """The answer's token logprobs, summarised: the router gates on these, not on tokens."""

    mean: float
    min: float
    tokens: int


@dataclass(frozen=True)
class ProviderAnswer:
    """What a provider returned for one call."""

    content: str
    finish: Finish
    model: str
    usage: TokenUsage
    # Cost the provider reported itself (OpenRouter-style `usage.cost`), in USD; None if absent.
    reported_cost_usd: float | None = None
    # None unless logprobs were asked for and the provider returned them.
    logprobs: LogprobSummary | None = None
    # Every choice, with tool calls, refusals and token logprobs; choice 0 repeats content
    # and finish.
    choices: tuple[Choice, ...] = ()


@dataclass(frozen=True)
class DispatchResult:
    """The accepted answer, where it came from and what it cost."""

    answer: ProviderAnswer
    endpoint: str
    region: str
    # What the request cost upstream: the answer's cost plus the estimated cost of any
    # cancelled (hedge-losing) call, which a provider bills for the tokens it had processed.
    cost_nano_usd: int
    # From sending the winning call upstream to the last byte of its answer.
    latency_s: float
    # Upstream calls made: the first, failovers and hedges.
    attempts: int
    # From sending the winning call upstream to its first token.
    ttft_s: float = 0.0
    # A hedge was sent because the first call had no token by its endpoint's p95.
    hedged: bool = False
    # The answer came from the hedge, not the call it was hedging.
    hedge_won: bool = False
    # Estimated cost of calls cancelled after losing a hedge race (included in cost_nano_usd).
    cancelled_cost_nano_usd: int = 0


@dataclass(frozen=True)
class Delta:
    """A piece of a streamed answer. `text` is all the text it adds (answer, refusal, tool
    names and arguments), which is what a cancelled call is billed for; `piece` says where it
    belongs when it is more than plain text of the first choice."""

    text: str
    piece: ChoiceDelta | None = None

    @classmethod
    def of(cls, piece: ChoiceDelta) -> Delta:
        """Plain text of the first choice stays a bare delta; anything else carries its piece,
        with all the text it adds (answer, refusal, tool names and arguments) for billing."""
        if piece.text_only:
            return cls(piece.content)
        calls = "".join(call.name + call.arguments for call in piece.tool_calls)
        return cls(piece.content + piece.refusal + calls, piece)

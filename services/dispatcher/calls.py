"""Domain types of a dispatched call and its answer."""

from __future__ import annotations

from dataclasses import dataclass

from shared.chat import Finish, Sampling, Turn
from shared.pricing import TokenUsage


@dataclass(frozen=True)
class ModelRequest:
    """One call to one concrete model."""

    model: str
    turns: tuple[Turn, ...]
    sampling: Sampling
    preferred_region: str = ""
    tier: int = 0


@dataclass(frozen=True)
class ProviderAnswer:
    """What a provider returned for one call."""

    content: str
    finish: Finish
    model: str
    usage: TokenUsage
    # Cost the provider reported itself (OpenRouter-style `usage.cost`), in USD; None if absent.
    reported_cost_usd: float | None = None


@dataclass(frozen=True)
class DispatchResult:
    """The accepted answer, where it came from and what it cost."""

    answer: ProviderAnswer
    endpoint: str
    region: str
    cost_nano_usd: int
    latency_s: float
    attempts: int


@dataclass(frozen=True)
class Delta:
    """A piece of streamed answer text."""

    text: str

"""Which wire an endpoint speaks: `provider: anthropic` endpoints get the Messages API client,
every other one OpenAI's chat completions. The dispatcher holds one `ByProvider`; each call
goes to the client of the endpoint it was sent to, so one model class may mix both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from services.dispatcher.calls import Delta, ModelRequest, ProviderAnswer
from services.dispatcher.endpoints import Endpoint
from shared.pricing import TokenUsage

ANTHROPIC = "anthropic"


class ProviderClient(Protocol):
    """What the dispatcher needs of a provider's client (providers/openai.py says how)."""

    def stream(
        self, endpoint: Endpoint, call: ModelRequest, timeout_s: float
    ) -> AsyncIterator[Delta | ProviderAnswer]: ...

    def estimate_usage(self, call: ModelRequest, content: str) -> TokenUsage: ...


class ByProvider:
    """Sends each call through the client for its endpoint's provider."""

    def __init__(self, openai: ProviderClient, anthropic: ProviderClient) -> None:
        self._openai = openai
        self._anthropic = anthropic

    def _client(self, endpoint: Endpoint) -> ProviderClient:
        return self._anthropic if endpoint.provider == ANTHROPIC else self._openai

    def stream(
        self, endpoint: Endpoint, call: ModelRequest, timeout_s: float
    ) -> AsyncIterator[Delta | ProviderAnswer]:
        return self._client(endpoint).stream(endpoint, call, timeout_s)

    def estimate_usage(self, call: ModelRequest, content: str) -> TokenUsage:
        # Both count with cl100k: a cancelled call's estimate does not depend on the wire.
        return self._openai.estimate_usage(call, content)

"""What the request path needs from the other services, as protocols.

The pipeline depends on these, not on gRPC stubs, so unit tests drive it with in-memory fakes
and the gRPC adapters in clients/ stay thin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from services.router.audit_compare import HitVerdict
from services.router.model import (
    CacheLookup,
    ChatRequest,
    Compression,
    StoredEntry,
    TierAnswer,
)
from services.router.policy import TierSpec
from shared.chat import ChoiceDelta, Turn


class CachePort(Protocol):
    async def lookup(self, request: ChatRequest, deadline: float) -> CacheLookup: ...

    async def store(
        self, request: ChatRequest, answer: TierAnswer, deadline: float
    ) -> StoredEntry | None:
        """Stores the answer; what the cache said of the entry, when it said it."""

    async def report_hit(
        self,
        request: ChatRequest,
        entry_id: str,
        verdict: HitVerdict,
        deadline: float,
        *,
        shadow: bool = False,
    ) -> None:
        """Tells the cache whether the entry it served to this request was right (or, with
        `shadow`, whether the nearest rejected candidate's answer agreed with the fresh one);
        raises StageUnavailable when the cache did not take the report."""


class CompressorPort(Protocol):
    async def compress(
        self, request: ChatRequest, target_model: str, deadline: float
    ) -> Compression: ...


class ModelPort(Protocol):
    async def call(
        self, request: ChatRequest, tier: TierSpec, turns: tuple[Turn, ...], deadline: float
    ) -> TierAnswer: ...

    def stream(
        self, request: ChatRequest, tier: TierSpec, turns: tuple[Turn, ...], deadline: float
    ) -> AsyncIterator[str | ChoiceDelta | TierAnswer]:
        """Plain text of choice 0 as strings, any other piece (tool-call fragments, a
        refusal, logprobs, another choice) as a ChoiceDelta, then the TierAnswer."""

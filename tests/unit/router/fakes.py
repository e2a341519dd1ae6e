"""In-memory implementations of the router's ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from services.router.audit_compare import HitVerdict
from services.router.model import (
    CachedAnswer,
    CacheLookup,
    ChatRequest,
    Compression,
    Outcome,
    RejectedCandidate,
    StageName,
    StageUnavailable,
    TierAnswer,
)
from services.router.policy import TierSpec
from shared.chat import Finish, Turn
from shared.errors import Unavailable
from shared.pricing import TokenUsage


def answer(content: str, model: str, finish: Finish = Finish.STOP, cost: int = 100) -> TierAnswer:
    return TierAnswer(content, finish, model, "us-east", TokenUsage(10, 5), cost, 0.01)


@dataclass
class FakeModels:
    """Answers per model; a model mapped to an exception raises it."""

    script: dict[str, TierAnswer | Exception]
    calls: list[str] = field(default_factory=list)
    seen_turns: list[tuple[Turn, ...]] = field(default_factory=list)
    # Seconds a model takes before answering (or before its first streamed word).
    delays: dict[str, float] = field(default_factory=dict)

    async def call(
        self, request: ChatRequest, tier: TierSpec, turns: tuple[Turn, ...], deadline: float
    ) -> TierAnswer:
        self.calls.append(tier.model)
        self.seen_turns.append(turns)
        await asyncio.sleep(self.delays.get(tier.model, 0))
        result = self.script[tier.model]
        if isinstance(result, Exception):
            raise result
        return result

    async def stream(
        self, request: ChatRequest, tier: TierSpec, turns: tuple[Turn, ...], deadline: float
    ) -> AsyncIterator[str | TierAnswer]:
        result = await self.call(request, tier, turns, deadline)
        for word in result.content.split(" "):
            yield word + " "
        yield result


@dataclass
class FakeCache:
    hit: CachedAnswer | None = None
    down: bool = False
    stored: list[TierAnswer] = field(default_factory=list)
    reports: list[tuple[str, HitVerdict]] = field(default_factory=list)
    # On a miss, the candidate the cache's verification turned down, and the shadow reports.
    nearest_rejected: RejectedCandidate | None = None
    shadow_reports: list[tuple[str, HitVerdict]] = field(default_factory=list)

    async def lookup(self, request: ChatRequest, deadline: float) -> CacheLookup:
        if self.down:
            raise StageUnavailable(StageName.CACHE, "UNAVAILABLE: connection refused")
        if self.hit is not None:
            return CacheLookup(self.hit)
        return CacheLookup(nearest_rejected=self.nearest_rejected)

    async def store(self, request: ChatRequest, answer: TierAnswer, deadline: float) -> None:
        if self.down:
            raise StageUnavailable(StageName.CACHE, "UNAVAILABLE: connection refused")
        self.stored.append(answer)

    async def report_hit(
        self,
        request: ChatRequest,
        entry_id: str,
        verdict: HitVerdict,
        deadline: float,
        *,
        shadow: bool = False,
    ) -> None:
        if self.down:
            raise StageUnavailable(StageName.CACHE, "UNAVAILABLE: connection refused")
        (self.shadow_reports if shadow else self.reports).append((entry_id, verdict))


@dataclass
class FakeCompressor:
    result: Compression | None = None
    down: bool = False

    async def compress(
        self, request: ChatRequest, target_model: str, deadline: float
    ) -> Compression:
        if self.down:
            raise StageUnavailable(StageName.COMPRESSOR, "UNAVAILABLE: connection refused")
        if self.result is not None:
            return self.result
        return Compression(request.turns, False, 10, 10, "", "below threshold", 0)


def unavailable(model: str) -> Unavailable:
    return Unavailable(f"all endpoints for model {model!r} failed")


SKIPPED = Outcome.SKIPPED

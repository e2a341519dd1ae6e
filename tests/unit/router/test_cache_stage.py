"""The cache stage: the pipeline visits the cache once before the cascade and once after it,
whatever the cache did; and what `after` does with a served hit and with a fresh answer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from services.router.audit_compare import HitVerdict
from services.router.cache_audit import AuditSampler, CacheAudit
from services.router.cache_stage import CacheStage
from services.router.cascade import Cascade
from services.router.model import (
    CachedAnswer,
    CacheLookup,
    ChatRequest,
    RejectedCandidate,
    RouteResult,
    StageLine,
    TierAnswer,
)
from services.router.pipeline import Pipeline
from services.router.policy import TierSpec
from shared.chat import Finish, Turn
from shared.errors import Unavailable
from shared.pricing import TokenUsage
from shared.tokens import TokenCounter
from tests.unit.router.fakes import FakeCache, FakeCompressor, FakeModels, answer
from tests.unit.router.fixtures import admit_acme, catalogue, policy_doc

TRACER = TracerProvider().get_tracer("test")
REFUSAL = "I'm sorry, but I can't help with that."


def cached(content: str) -> CachedAnswer:
    return CachedAnswer("semantic", content, "mid", TokenUsage(10, 5), 0.93, Finish.STOP, "e-1")


@dataclass
class LoggedModels(FakeModels):
    """Models that write each call into the shared log, to place it between the stage's calls."""

    log: list[str] = field(default_factory=list)

    async def call(
        self, request: ChatRequest, tier: TierSpec, turns: tuple[Turn, ...], deadline: float
    ) -> TierAnswer:
        self.log.append(f"call {tier.model}")
        return await super().call(request, tier, turns, deadline)


class RecordingStage(CacheStage):
    """The real stage, with each visit of the pipeline written into the log."""

    def __init__(self, cache: FakeCache, cascade: Cascade, log: list[str]) -> None:
        audit = CacheAudit(cache, cascade, TRACER, sampler=AuditSampler(lambda: 0.0))
        super().__init__(cache, audit)
        self.log = log

    async def before(self, request: ChatRequest, deadline: float) -> tuple[CacheLookup, StageLine]:
        self.log.append("before")
        return await super().before(request, deadline)

    def after(self, request: ChatRequest, found: CacheLookup, fresh: TierAnswer | None) -> None:
        self.log.append("after")
        super().after(request, found, fresh)


def rig(cache: FakeCache, models: LoggedModels) -> tuple[Pipeline, list[str]]:
    cascade = Cascade(models, TRACER)
    stage = RecordingStage(cache, cascade, models.log)
    pipeline = Pipeline(
        cache,
        FakeCompressor(),
        cascade,
        catalogue(),
        TokenCounter(),
        cache_stage=stage,
    )
    return pipeline, models.log


async def visits(pipeline: Pipeline, log: list[str], stream: bool) -> list[str]:
    request = admit_acme(policy_doc(), "What's the capital city of France?")
    async for event in pipeline.run(request, time.monotonic() + 5, stream=stream):
        if isinstance(event, RouteResult):
            log.append("hit result" if event.cache_hit else "result")
    await pipeline.drain()
    return log


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("cache", "expected"),
    [
        pytest.param({"hit": cached("Paris.")}, ["before", "after", "hit result"], id="hit"),
        pytest.param({}, ["before", "call cheap", "after", "result"], id="miss"),
        pytest.param(
            {"hit": cached(REFUSAL)}, ["before", "call cheap", "after", "result"], id="rejected-hit"
        ),
        pytest.param({"down": True}, ["before", "call cheap", "after", "result"], id="degraded"),
    ],
)
async def test_the_pipeline_visits_the_cache_once_before_and_once_after_the_cascade(
    cache: dict[str, Any], expected: list[str], stream: bool
) -> None:
    models = LoggedModels({"cheap": answer("Paris.", "cheap")})
    pipeline, log = rig(FakeCache(**cache), models)
    assert await visits(pipeline, log, stream) == expected


async def test_a_request_no_tier_answers_visits_the_cache_before_only() -> None:
    # With no answer there is nothing to store, shadow-check or audit.
    down = Unavailable("dispatcher down")
    models = LoggedModels({"cheap": down, "mid": down, "top": down})
    pipeline, log = rig(FakeCache(), models)
    with pytest.raises(Unavailable):
        await visits(pipeline, log, stream=False)
    assert log == ["before", "call cheap", "call mid", "call top"]


def stage_over(cache: FakeCache, models: FakeModels) -> CacheStage:
    cascade = Cascade(models, TRACER)
    return CacheStage(cache, CacheAudit(cache, cascade, TRACER, sampler=AuditSampler(lambda: 0.0)))


async def test_after_a_served_hit_audits_it_and_stores_nothing() -> None:
    cache = FakeCache()
    stage = stage_over(cache, FakeModels({"cheap": answer("Lyon.", "cheap")}))
    doc = policy_doc()
    doc["tenants"]["acme"]["cache"] = {"audit_rate": 1.0}
    request = admit_acme(doc, "What's the capital city of France?")
    stage.after(request, CacheLookup(cached("Paris.")), None)
    await stage.drain()
    assert cache.reports == [("e-1", HitVerdict.WRONG)] and cache.stored == []


async def test_after_a_fresh_answer_stores_it_and_shadow_checks_the_rejected_candidate() -> None:
    cache = FakeCache()
    stage = stage_over(cache, FakeModels({}))
    request = admit_acme(policy_doc(), "What's the capital city of France?")
    found = CacheLookup(nearest_rejected=RejectedCandidate("e-9", "Lyon.", 0.88))
    stage.after(request, found, answer("Paris.", "cheap"))
    await stage.drain()
    assert [a.content for a in cache.stored] == ["Paris."]
    assert cache.shadow_reports == [("e-9", HitVerdict.WRONG)]

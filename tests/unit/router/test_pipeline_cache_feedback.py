"""The request path's cache feedback: hits re-checked by the first tier's gates, and sampled
semantic hits audited after the caller has the cached answer."""

import asyncio
import time
from datetime import UTC, datetime

from opentelemetry.sdk.trace import TracerProvider

from services.router.audit_compare import HitVerdict
from services.router.budgets import InMemoryLedger
from services.router.cache_audit import AuditSampler, CacheAudit
from services.router.cache_stage import CacheStage
from services.router.cascade import Cascade
from services.router.model import CachedAnswer, ChatRequest, Outcome, RouteResult, StageName
from services.router.pipeline import Pipeline, complete
from services.router.spending import Spending
from shared.chat import Finish
from shared.pricing import TokenUsage
from shared.tokens import TokenCounter
from tests.unit.router.fakes import FakeCache, FakeCompressor, FakeModels, answer
from tests.unit.router.fixtures import admit_acme, catalogue, policy_doc

TRACER = TracerProvider().get_tracer("test")
REFUSAL = "I'm sorry, but I can't help with that."


def cached(content: str, kind: str = "semantic", finish: Finish = Finish.STOP) -> CachedAnswer:
    return CachedAnswer(kind, content, "mid", TokenUsage(10, 5), 0.93, finish, "entry-7")


def build(
    models: FakeModels, cache: FakeCache, ledger: InMemoryLedger | None = None
) -> tuple[Pipeline, CacheAudit]:
    cascade = Cascade(models, TRACER)
    audit = CacheAudit(
        cache, cascade, TRACER, Spending(ledger, catalogue()), AuditSampler(lambda: 0.0)
    )
    pipeline = Pipeline(
        cache,
        FakeCompressor(),
        cascade,
        catalogue(),
        TokenCounter(),
        ledger,
        cache_stage=CacheStage(cache, audit),
    )
    return pipeline, audit


def admit(audit_rate: float = 0.0) -> ChatRequest:
    doc = policy_doc()
    doc["tenants"]["acme"]["cache"] = {"audit_rate": audit_rate}
    return admit_acme(doc, "What's the capital city of France?")


def cache_line(result: RouteResult):
    return next(x for x in result.lines if x.stage is StageName.CACHE)


async def test_a_semantic_hit_failing_a_gate_is_a_miss_and_is_reported_wrong() -> None:
    models = FakeModels({"cheap": answer("Paris.", "cheap", cost=50)})
    cache = FakeCache(hit=cached(REFUSAL))
    pipeline, audit = build(models, cache)
    result = await complete(pipeline, admit(), time.monotonic() + 5)
    assert not result.cache_hit and result.content == "Paris." and models.calls == ["cheap"]
    line = cache_line(result)
    assert line.outcome is Outcome.REJECTED
    assert "semantic hit (similarity 0.930) failed gate refusal" in line.detail
    assert "treated as a miss" in line.detail
    await pipeline.drain()
    assert cache.reports == [("entry-7", HitVerdict.WRONG)] and audit.reported == 1
    assert [a.content for a in cache.stored] == ["Paris."], "the fresh answer is stored"


async def test_a_cut_off_hit_fails_the_finish_reason_gate() -> None:
    models = FakeModels({"cheap": answer("Paris.", "cheap")})
    cache = FakeCache(hit=cached("The capital is", finish=Finish.LENGTH))
    pipeline, _ = build(models, cache)
    result = await complete(pipeline, admit(), time.monotonic() + 5)
    assert not result.cache_hit and "gate finish_reason" in cache_line(result).detail
    await pipeline.drain()
    assert cache.reports == [("entry-7", HitVerdict.WRONG)]


async def test_an_exact_hit_failing_a_gate_falls_through_without_a_report() -> None:
    models = FakeModels({"cheap": answer("Paris.", "cheap")})
    cache = FakeCache(hit=cached(REFUSAL, kind="exact"))
    pipeline, _ = build(models, cache)
    result = await complete(pipeline, admit(audit_rate=1.0), time.monotonic() + 5)
    assert not result.cache_hit and models.calls == ["cheap"]
    assert cache_line(result).detail.startswith("exact hit failed gate refusal")
    await pipeline.drain()
    assert cache.reports == []


async def test_a_hit_passing_the_gates_is_served_and_not_audited_at_rate_zero() -> None:
    models = FakeModels({"cheap": answer("Lyon.", "cheap")})
    cache = FakeCache(hit=cached("Paris."))
    pipeline, _ = build(models, cache)
    result = await complete(pipeline, admit(audit_rate=0.0), time.monotonic() + 5)
    assert result.cache_hit and cache_line(result).outcome is Outcome.USED
    await pipeline.drain()
    assert models.calls == [] and cache.reports == []


async def test_an_audited_hit_is_served_at_once_then_checked_and_billed() -> None:
    models = FakeModels({"cheap": answer("Lyon.", "cheap", cost=60)}, delays={"cheap": 0.2})
    cache = FakeCache(hit=cached("Paris."))
    ledger = InMemoryLedger(lambda: datetime(2026, 11, 27, tzinfo=UTC))
    pipeline, audit = build(models, cache, ledger)
    result = await asyncio.wait_for(
        complete(pipeline, admit(audit_rate=1.0), time.monotonic() + 5), timeout=0.1
    )
    # The caller's answer is the cached one, unchanged and free; the audit has not ended.
    assert result.cache_hit and result.content == "Paris." and result.total_cost_nano_usd == 0
    assert audit.audits.pending == 1 and cache.reports == []
    await pipeline.drain()
    assert models.calls == ["cheap"] and cache.stored == [], "an audit never stores"
    assert cache.reports == [("entry-7", HitVerdict.WRONG)]
    assert ledger.spent("acme").today_nano_usd == 60


async def test_the_stream_path_audits_too() -> None:
    models = FakeModels({"cheap": answer("Paris", "cheap")})
    cache = FakeCache(hit=cached("Paris."))
    pipeline, _ = build(models, cache)
    events = [
        e async for e in pipeline.run(admit(audit_rate=1.0), time.monotonic() + 5, stream=True)
    ]
    assert isinstance(events[-1], RouteResult) and events[-1].cache_hit
    await pipeline.drain()
    assert cache.reports == [("entry-7", HitVerdict.RIGHT)]

"""Sampled audits of semantic cache hits: who is sampled, what the audit costs and reports, and
that cache failures during a report are counted, never raised."""

import random
from dataclasses import replace
from datetime import UTC, datetime

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from services.router.audit_compare import HitVerdict
from services.router.budgets import InMemoryLedger
from services.router.cache_audit import AUDIT_VERDICT, AuditSampler, CacheAudit, recheck
from services.router.cascade import Cascade
from services.router.metrics import RouterMetrics
from services.router.model import CachedAnswer, ChatRequest
from services.router.spending import Spending
from shared.chat import Finish, FormatKind, ResponseFormat
from shared.errors import Unavailable
from shared.pricing import TokenUsage
from tests.unit.router.fakes import FakeCache, FakeModels, answer
from tests.unit.router.fixtures import admit_acme, catalogue, policy_doc

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def hit(content: str = "Paris.", kind: str = "semantic") -> CachedAnswer:
    return CachedAnswer(kind, content, "mid", TokenUsage(10, 2), 0.93, Finish.STOP, "e-1")


def request(rate: float = 1.0, daily_usd: float = 0, **chat_class: object) -> ChatRequest:
    doc = policy_doc()
    acme = doc["tenants"]["acme"]
    acme["cache"] = {"audit_rate": rate}
    if daily_usd:
        acme["budget"] = {"daily_usd": daily_usd}
    acme["model_classes"]["chat"].update(chat_class)
    return admit_acme(doc, "What's the capital city of France?")


def audit_cost_usd(metrics: RouterMetrics, **labels: str) -> float:
    """What the router's stage-cost counter holds for acme's cache audits with these labels."""
    wanted = {"tenant": "acme", "stage": "cache_audit", **labels}
    (metric,) = metrics.stage_cost.collect()
    samples = metric.samples
    return sum(
        s.value for s in samples if s.name.endswith("_total") and s.labels.items() >= wanted.items()
    )


class Rig:
    def __init__(self, models: FakeModels, cache: FakeCache | None = None) -> None:
        self.spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        tracer = provider.get_tracer("test")
        self.models = models
        self.cache = cache or FakeCache()
        self.ledger = InMemoryLedger(lambda: NOW)
        self.metrics = RouterMetrics(CollectorRegistry())
        self.audit = CacheAudit(
            self.cache,
            Cascade(models, tracer),
            tracer,
            Spending(self.ledger, catalogue()),
            AuditSampler(lambda: 0.5),
            metrics=self.metrics,
        )

    def span(self, name: str) -> dict[str, object]:
        found = [s for s in self.spans.get_finished_spans() if s.name == name]
        assert len(found) == 1
        return dict(found[0].attributes or {})


def test_sampling_follows_the_tenant_rate_with_an_injected_draw() -> None:
    tenant = request(rate=0.25).tenant
    draws = iter([0.1, 0.3, 0.2499, 0.25])
    sampler = AuditSampler(lambda: next(draws))
    assert [sampler.sample(tenant) for _ in range(4)] == [True, False, True, False]


def test_sampling_is_deterministic_under_a_seed_and_close_to_the_rate() -> None:
    tenant = request(rate=0.02).tenant
    first, second = (AuditSampler(random.Random(7).random) for _ in range(2))
    assert [first.sample(tenant) for _ in range(500)] == [second.sample(tenant) for _ in range(500)]
    sampler = AuditSampler(random.Random(7).random)
    share = sum(sampler.sample(tenant) for _ in range(20_000)) / 20_000
    assert 0.015 < share < 0.025


def test_rate_zero_never_samples_and_rate_one_always_does() -> None:
    never = AuditSampler(lambda: 0.0)
    always = AuditSampler(lambda: 0.999999)
    assert not never.sample(request(rate=0.0).tenant)
    assert always.sample(request(rate=1.0).tenant)


async def test_only_sampled_semantic_hits_are_audited() -> None:
    rig = Rig(FakeModels({"cheap": answer("Paris.", "cheap")}))
    assert not rig.audit.consider(request(rate=1.0), hit(kind="exact"))
    assert not rig.audit.consider(request(rate=0.4), hit())  # the draw is 0.5
    assert rig.audit.consider(request(rate=0.6), hit())
    await rig.audit.drain()
    assert rig.models.calls == ["cheap"] and rig.cache.reports == [("e-1", HitVerdict.RIGHT)]


async def test_a_disagreeing_fresh_answer_is_reported_wrong_and_billed_on_an_audit_span() -> None:
    rig = Rig(FakeModels({"cheap": answer("Lyon.", "cheap", cost=70)}))
    found = await rig.audit.audit(request(), hit("Paris."))
    assert found is not None and found.verdict is HitVerdict.WRONG
    assert rig.cache.reports == [("e-1", HitVerdict.WRONG)]
    assert rig.ledger.spent("acme").today_nano_usd == 70
    assert rig.ledger.spent("acme").charged_requests_today == 0, "an audit is not a request"
    # Billed to the tenant, so the router's stage costs hold it too, under its own stage.
    assert audit_cost_usd(rig.metrics, model="cheap", tier="1") == 70e-9
    span = rig.span("audit")
    assert span[AUDIT_VERDICT] == "wrong" and span["sluice.cost.usd"] == 70e-9
    assert span["sluice.stage"] == "audit" and span["gen_ai.request.model"] == "cheap"
    # The audit's tier call is traced under the audit span.
    tier = next(s for s in rig.spans.get_finished_spans() if s.name.startswith("tier 1"))
    audit = next(s for s in rig.spans.get_finished_spans() if s.name == "audit")
    assert tier.parent is not None and tier.parent.span_id == audit.context.span_id


async def test_the_audit_runs_the_cascade_with_its_gates() -> None:
    refusal = "I'm sorry, but I can't help with that."
    rig = Rig(
        FakeModels({"cheap": answer(refusal, "cheap", cost=5), "mid": answer("Paris.", "mid")})
    )
    found = await rig.audit.audit(request(), hit("Paris."))
    assert found is not None and found.verdict is HitVerdict.RIGHT
    assert rig.models.calls == ["cheap", "mid"]
    assert rig.ledger.spent("acme").today_nano_usd == 105, "every attempt of the audit is billed"


async def test_differently_worded_free_text_is_undecided_and_not_reported() -> None:
    fresh = "DNS maps host names to IP addresses through a hierarchy of name servers."
    rig = Rig(FakeModels({"cheap": answer(fresh, "cheap", cost=30)}))
    served = "The domain name system resolves names into addresses, with caching on the way."
    found = await rig.audit.audit(request(), hit(served))
    assert found is not None and found.verdict is None
    assert rig.cache.reports == [] and rig.audit.verdicts["undecided"] == 1
    assert rig.span("audit")[AUDIT_VERDICT] == "undecided"
    assert rig.ledger.spent("acme").today_nano_usd == 30, "an undecided audit still cost money"


async def test_a_cache_that_cannot_take_the_report_is_counted_not_raised() -> None:
    rig = Rig(FakeModels({"cheap": answer("Lyon.", "cheap")}), FakeCache(down=True))
    found = await rig.audit.audit(request(), hit("Paris."))
    assert found is not None and found.verdict is HitVerdict.WRONG
    assert (rig.audit.reported, rig.audit.report_failures) == (0, 1)


async def test_no_tier_answering_ends_the_audit_without_a_verdict() -> None:
    rig = Rig(FakeModels({m: Unavailable("down") for m in ("cheap", "mid", "top")}))
    assert await rig.audit.audit(request(), hit()) is None
    assert rig.audit.audit_failures == 1 and rig.cache.reports == []


async def test_a_tenant_whose_budget_is_spent_is_not_audited() -> None:
    rig = Rig(FakeModels({"cheap": answer("Paris.", "cheap")}))
    rig.ledger.record("acme", 2_000_000_000)
    assert not rig.audit.consider(request(daily_usd=1), hit())
    assert not rig.audit.consider(replace(request(), downgrade_reason="spent"), hit())
    assert rig.audit.audits.pending == 0


def test_recheck_runs_the_first_tiers_rule_gates_only() -> None:
    chat = request(gate_settings={"expected_format": "[A-D]"})
    first = chat.model_class.tiers[0]
    tiers = (replace(first, gates=("finish_reason", "format", "scorer", "judge")),)
    chat = replace(chat, model_class=replace(chat.model_class, tiers=tiers))
    assert recheck(chat, hit("B")).passed
    failed = recheck(chat, hit("Paris."))
    assert (failed.passed, failed.gate) == (False, "format")
    cut = replace(hit("B"), finish=Finish.LENGTH)
    assert recheck(chat, cut).gate == "finish_reason"


def test_recheck_applies_the_json_gate_to_json_requests() -> None:
    chat = replace(request(), response_format=ResponseFormat(FormatKind.JSON_OBJECT))
    assert recheck(chat, hit('{"city": "Paris"}')).passed
    assert recheck(chat, hit("Paris.")).gate == "json"


async def test_an_audit_no_tier_answers_still_bills_the_timed_out_prompts() -> None:
    models = FakeModels({m: answer("slow", m) for m in ("cheap", "mid", "top")})
    models.delays.update({"cheap": 5.0, "mid": 5.0, "top": 5.0})
    ledger = InMemoryLedger(lambda: NOW)
    tracer = TracerProvider().get_tracer("test")
    cascade = Cascade(models, tracer, prompt_cost=lambda model, turns: 40)
    spending = Spending(ledger, catalogue())
    metrics = RouterMetrics(CollectorRegistry())
    audit = CacheAudit(
        FakeCache(), cascade, tracer, spending, AuditSampler(lambda: 0.5), metrics=metrics
    )
    chat = request()
    tiers = tuple(replace(t, latency_budget_s=0.02) for t in chat.model_class.tiers)
    chat = replace(chat, model_class=replace(chat.model_class, tiers=tiers))

    found = await audit.audit(chat, hit("Paris."))

    assert found is None and audit.audit_failures == 1
    assert ledger.spent("acme").today_nano_usd == 3 * 40
    assert audit_cost_usd(metrics, model="") == 3 * 40e-9

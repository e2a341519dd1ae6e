"""Shadow checks: on a miss, the cache's nearest rejected candidate is compared with the fresh
answer, and a decided verdict goes back to the cache as a calibration-only (shadow) report."""

import time
from dataclasses import replace

import pytest

from services.router.audit_compare import HitVerdict
from services.router.cache_audit import UNDECIDED
from services.router.model import CacheMode, ChatRequest, RejectedCandidate
from services.router.pipeline import complete
from shared.chat import Finish
from tests.unit.router.fakes import FakeCache, FakeModels, answer
from tests.unit.router.fixtures import admit_acme, policy_doc
from tests.unit.router.test_pipeline_cache_feedback import build


def admit(shadow_checks: bool = True) -> ChatRequest:
    doc = policy_doc()
    doc["tenants"]["acme"]["cache"] = {"shadow_checks": shadow_checks}
    return admit_acme(doc, "What's the capital city of France?")


def rejected(content: str) -> RejectedCandidate:
    return RejectedCandidate("entry-9", content, 0.88)


@pytest.mark.parametrize(
    ("candidate", "verdict"),
    [("Paris.", HitVerdict.RIGHT), ("Lyon.", HitVerdict.WRONG)],
)
async def test_a_decided_comparison_is_reported_as_a_shadow_verdict(
    candidate: str, verdict: HitVerdict
) -> None:
    cache = FakeCache(nearest_rejected=rejected(candidate))
    pipeline, audit = build(FakeModels({"cheap": answer("Paris.", "cheap")}), cache)

    result = await complete(pipeline, admit(), time.monotonic() + 5)
    await pipeline.drain()

    assert result.content == "Paris." and not result.cache_hit
    assert cache.shadow_reports == [("entry-9", verdict)]
    assert cache.reports == [], "a shadow verdict is not a report on a served hit"
    assert audit.shadow_verdicts[verdict] == 1 and audit.reported == 1


async def test_free_text_that_cannot_be_compared_is_counted_undecided_and_not_reported() -> None:
    fresh = "DNS maps host names to IP addresses through a hierarchy of name servers."
    served = "The domain name system resolves names into addresses, with caching on the way."
    cache = FakeCache(nearest_rejected=rejected(served))
    pipeline, audit = build(FakeModels({"cheap": answer(fresh, "cheap")}), cache)

    await complete(pipeline, admit(), time.monotonic() + 5)
    await pipeline.drain()

    assert cache.shadow_reports == [] and audit.shadow_verdicts[UNDECIDED] == 1


async def test_a_tenant_that_turns_shadow_checks_off_sends_none() -> None:
    cache = FakeCache(nearest_rejected=rejected("Paris."))
    pipeline, audit = build(FakeModels({"cheap": answer("Paris.", "cheap")}), cache)

    await complete(pipeline, admit(shadow_checks=False), time.monotonic() + 5)
    await pipeline.drain()

    assert cache.shadow_reports == [] and sum(audit.shadow_verdicts.values()) == 0


async def test_a_cut_off_fresh_answer_is_no_reference_for_a_shadow_check() -> None:
    cache = FakeCache(nearest_rejected=rejected("Paris is the capital"))
    models = FakeModels(
        {m: answer("Paris is the capital", m, Finish.LENGTH) for m in ("cheap", "mid", "top")}
    )
    pipeline, _ = build(models, cache)

    await complete(pipeline, admit(), time.monotonic() + 5)
    await pipeline.drain()

    assert cache.shadow_reports == []


async def test_a_bypassed_cache_names_no_candidate_so_nothing_is_shadow_checked() -> None:
    cache = FakeCache(nearest_rejected=rejected("Paris."))
    pipeline, _ = build(FakeModels({"cheap": answer("Paris.", "cheap")}), cache)

    await complete(pipeline, replace(admit(), cache_mode=CacheMode.BYPASS), time.monotonic() + 5)
    await pipeline.drain()

    assert cache.shadow_reports == []


async def test_a_cache_that_cannot_take_a_shadow_report_counts_it_and_raises_nothing() -> None:
    cache = FakeCache(down=True)
    pipeline, audit = build(FakeModels({}), cache)

    assert audit.shadow(admit(), rejected("Paris."), answer("Paris.", "cheap"))
    await pipeline.drain()

    assert audit.report_failures == 1 and audit.reported == 0

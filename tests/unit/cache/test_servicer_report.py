"""ReportHit through the servicer: verdicts (served or shadow) map to the domain, Stats counts
the failures, bad reports get a status naming the problem, and a miss's nearest rejected
candidate reaches the LookupResponse."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.common.v1 import common_pb2

from services.cache.model import HitKind, LookupResult, RejectedCandidate
from services.cache.servicer import _lookup_response
from shared.errors import error_origin
from tests.unit.cache.fakes import HashingEmbedder
from tests.unit.cache.test_servicer import (
    PARAPHRASE,
    QUESTION,
    Served,
    lookup,
    serving,
    store,
    user,
)


@pytest.fixture
async def running() -> AsyncIterator[Served]:
    async with serving(HashingEmbedder()) as served:
        yield served


def report(
    text: str,
    entry_id: str,
    verdict: int = pb.HIT_VERDICT_WRONG,
    *,
    tenant: str = "acme",
    shadow: bool = False,
) -> pb.ReportHitRequest:
    return pb.ReportHitRequest(
        context=common_pb2.RequestContext(tenant_id=tenant),
        model_class="small",
        messages=[user(text)],
        sampling=common_pb2.SamplingParams(temperature=0.0, max_tokens=64),
        entry_id=entry_id,
        verdict=verdict,  # type: ignore[arg-type]
        shadow=shadow,
    )


async def test_a_wrong_hit_is_removed_and_counted(running):
    stored = await running.stub.Store(store(QUESTION))
    hit = await running.stub.Lookup(lookup(PARAPHRASE))
    assert (hit.kind, hit.entry_id) == (pb.HIT_KIND_SEMANTIC, stored.entry_id)
    right = await running.stub.ReportHit(report(PARAPHRASE, hit.entry_id, pb.HIT_VERDICT_RIGHT))
    assert (right.removed, right.namespace_key) == (False, stored.namespace_key)
    wrong = await running.stub.ReportHit(report(PARAPHRASE, hit.entry_id))
    assert wrong.removed
    # make_cache's default verifier keeps no calibration: nothing to learn, nothing claimed.
    assert (wrong.calibrated, wrong.threshold) == (False, 0.0)
    assert (await running.stub.Lookup(lookup(PARAPHRASE))).kind == pb.HIT_KIND_MISS
    stats = await running.stub.Stats(
        pb.StatsRequest(context=common_pb2.RequestContext(tenant_id="acme"))
    )
    assert (stats.verification_failures, stats.entries, stats.invalidations) == (1, 0, 0)
    spans = [s for s in running.spans.get_finished_spans() if s.name.endswith("/ReportHit")]
    assert [dict(s.attributes or {}).get("sluice.stage") for s in spans] == ["cache", "cache"]


@pytest.mark.parametrize(
    ("verdict", "entry", "tenant", "code", "text"),
    [
        (pb.HIT_VERDICT_UNSPECIFIED, "stored", "acme", "INVALID_ARGUMENT", "verdict is required"),
        (pb.HIT_VERDICT_WRONG, "", "acme", "INVALID_ARGUMENT", "entry_id is required"),
        (pb.HIT_VERDICT_WRONG, "stored", "", "INVALID_ARGUMENT", "tenant_id"),
        (pb.HIT_VERDICT_WRONG, "stored", "globex", "NOT_FOUND", "holds no entries"),
        (pb.HIT_VERDICT_WRONG, "nope", "acme", "NOT_FOUND", "is not in namespace"),
    ],
)
async def test_bad_reports_get_a_status_naming_the_problem(
    running, verdict, entry, tenant, code, text
):
    stored = await running.stub.Store(store(QUESTION))
    entry_id = stored.entry_id if entry == "stored" else entry
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await running.stub.ReportHit(report(PARAPHRASE, entry_id, verdict, tenant=tenant))
    assert raised.value.code() == getattr(grpc.StatusCode, code)
    assert text in (raised.value.details() or "")
    assert error_origin(raised.value) == "cache"


async def test_shadow_verdicts_keep_the_entry_and_count_no_failure(running):
    stored = await running.stub.Store(store(QUESTION))
    for verdict in (pb.HIT_VERDICT_RIGHT, pb.HIT_VERDICT_WRONG):
        shadow = await running.stub.ReportHit(
            report(PARAPHRASE, stored.entry_id, verdict, shadow=True)
        )
        assert (shadow.removed, shadow.namespace_key) == (False, stored.namespace_key)
    assert (await running.stub.Lookup(lookup(QUESTION))).entry_id == stored.entry_id
    stats = await running.stub.Stats(
        pb.StatsRequest(context=common_pb2.RequestContext(tenant_id="acme"))
    )
    assert (stats.verification_failures, stats.entries) == (0, 1)


async def test_a_shadow_report_on_the_exact_entry_is_invalid(running):
    stored = await running.stub.Store(store(QUESTION))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await running.stub.ReportHit(
            report(QUESTION, stored.entry_id, pb.HIT_VERDICT_RIGHT, shadow=True)
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "shadow: " in (raised.value.details() or "")
    assert "stored for exactly this request" in (raised.value.details() or "")


def test_a_miss_maps_its_nearest_rejected_candidate_and_a_plain_miss_none():
    nearest = RejectedCandidate("entry-7", "Paris.", 0.93)
    miss = _lookup_response(
        LookupResult(HitKind.MISS, namespace="ns", rejected=2, nearest_rejected=nearest)
    )
    assert miss.HasField("nearest_rejected")
    assert (miss.nearest_rejected.entry_id, miss.nearest_rejected.content) == ("entry-7", "Paris.")
    assert miss.nearest_rejected.similarity == pytest.approx(0.93)
    assert (miss.kind, miss.rejected, miss.entry_id) == (pb.HIT_KIND_MISS, 2, "")
    plain = _lookup_response(LookupResult(HitKind.MISS, namespace="ns"))
    assert not plain.HasField("nearest_rejected")

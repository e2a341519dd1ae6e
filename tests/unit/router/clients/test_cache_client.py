"""The cache client's hit feedback: the entry id a hit carries, the ReportHit request it sends,
and a failing cache as StageUnavailable."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, cast

import grpc
import pytest
from sluice.cache.v1 import cache_service_pb2 as cache_pb
from sluice.common.v1 import common_pb2

from services.router.admission import Admission, Asked
from services.router.audit_compare import HitVerdict
from services.router.clients.cache import CacheClient
from services.router.model import ChatRequest, StageUnavailable, TierAnswer
from shared.chat import Choice, Finish, Role, Sampling, ToolCall, ToolFunction, ToolSet, Turn
from shared.convert_tools import choices_from_proto, choices_to_proto, tools_from_proto
from shared.pricing import TokenUsage
from shared.tokens import TokenCounter
from tests.unit.router.fixtures import policy


class Stub:
    """Records ReportHit requests and their timeouts; raises `error` when set."""

    def __init__(
        self,
        error: grpc.aio.AioRpcError | None = None,
        found: cache_pb.LookupResponse | None = None,
    ) -> None:
        self.error = error
        self.found = found or cache_pb.LookupResponse(
            kind=cache_pb.HIT_KIND_SEMANTIC, content="Paris.", similarity=0.93, entry_id="e-42"
        )
        self.sent: list[tuple[cache_pb.ReportHitRequest, float]] = []
        self.looked_up: list[cache_pb.LookupRequest] = []
        self.stored: list[cache_pb.StoreRequest] = []

    async def ReportHit(  # noqa: N802 - named by the proto
        self, request: cache_pb.ReportHitRequest, **options: float
    ) -> cache_pb.ReportHitResponse:
        self.sent.append((request, options["timeout"]))
        if self.error is not None:
            raise self.error
        return cache_pb.ReportHitResponse(removed=True)

    async def Lookup(
        self, request: cache_pb.LookupRequest, **options: float
    ) -> cache_pb.LookupResponse:
        self.looked_up.append(request)
        return self.found

    async def Store(
        self, request: cache_pb.StoreRequest, **options: float
    ) -> cache_pb.StoreResponse:
        self.stored.append(request)
        return cache_pb.StoreResponse(entry_id="e-1")


def chat() -> ChatRequest:
    return Admission(policy(), TokenCounter(), 10_000).admit(
        "acme-key",
        Asked(
            request_id="r9",
            model_class="",
            turns=(Turn(Role.SYSTEM, "Be brief."), Turn(Role.USER, "Capital of France?")),
            sampling=Sampling(),
            cache_mode=None,
            max_cost_nano_usd=0,
        ),
    )


def client(stub: Stub) -> CacheClient:
    return CacheClient(cast(Any, stub), timeout_s=2.0)


@pytest.mark.parametrize(
    ("verdict", "sent"),
    [
        (HitVerdict.WRONG, cache_pb.HIT_VERDICT_WRONG),
        (HitVerdict.RIGHT, cache_pb.HIT_VERDICT_RIGHT),
    ],
)
async def test_report_names_the_request_as_its_lookup_did_and_the_entry(
    verdict: HitVerdict, sent: int
) -> None:
    stub = Stub()
    await client(stub).report_hit(chat(), "entry-7", verdict, time.monotonic() + 30)
    [(request, timeout)] = stub.sent
    assert (request.entry_id, request.verdict) == ("entry-7", sent)
    assert (request.context.tenant_id, request.context.request_id) == ("acme", "r9")
    assert request.model_class == "chat"
    assert [m.content for m in request.messages] == ["Be brief.", "Capital of France?"]
    assert request.sampling.HasField("temperature") and request.sampling.temperature == 0.0
    assert timeout == 2.0, "capped at the cache timeout, not the report's deadline"


async def test_a_failed_report_is_a_stage_unavailable() -> None:
    error = grpc.aio.AioRpcError(
        grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(), "no such entry"
    )
    with pytest.raises(StageUnavailable, match="NOT_FOUND: no such entry"):
        await client(Stub(error)).report_hit(
            chat(), "gone", HitVerdict.WRONG, time.monotonic() + 30
        )


async def test_a_hit_carries_the_id_of_the_entry_served() -> None:
    found = await client(Stub()).lookup(chat(), time.monotonic() + 30)
    hit = found.hit
    assert hit is not None and (hit.kind, hit.entry_id) == ("semantic", "e-42")
    assert found.nearest_rejected is None


async def test_a_miss_carries_the_nearest_rejected_candidate_when_the_cache_names_one() -> None:
    rejected = cache_pb.RejectedCandidate(entry_id="e-7", content="Lyon.", similarity=0.91)
    miss = cache_pb.LookupResponse(kind=cache_pb.HIT_KIND_MISS, nearest_rejected=rejected)
    found = await client(Stub(found=miss)).lookup(chat(), time.monotonic() + 30)
    assert found.hit is None and found.nearest_rejected is not None
    candidate = found.nearest_rejected
    assert (candidate.entry_id, candidate.content) == ("e-7", "Lyon.")
    assert candidate.similarity == pytest.approx(0.91)
    plain_miss = Stub(found=cache_pb.LookupResponse())
    plain = await client(plain_miss).lookup(chat(), time.monotonic() + 30)
    assert plain.hit is None and plain.nearest_rejected is None


@pytest.mark.parametrize("shadow", [False, True])
async def test_a_report_says_whether_it_is_a_shadow_check(shadow: bool) -> None:
    stub = Stub()
    await client(stub).report_hit(
        chat(), "e-7", HitVerdict.RIGHT, time.monotonic() + 30, shadow=shadow
    )
    [(request, _)] = stub.sent
    assert request.shadow is shadow


WEATHER = ToolSet((ToolFunction("get_weather", "", '{"type": "object"}'),))
CALLS = (
    Choice(0, "", Finish.TOOL_CALLS, (ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),)),
)


async def test_lookup_and_store_key_on_the_tools_and_keep_every_choice() -> None:
    request = replace(chat(), tools=WEATHER)
    found = cache_pb.LookupResponse(
        kind=cache_pb.HIT_KIND_EXACT, finish_reason=common_pb2.FINISH_REASON_TOOL_CALLS
    )
    found.choices.extend(choices_to_proto(CALLS))
    stub = Stub(found=found)
    hit = (await client(stub).lookup(request, time.monotonic() + 30)).hit
    assert hit is not None and hit.choices == CALLS
    assert tools_from_proto(stub.looked_up[0].tools) == WEATHER
    tier_answer = TierAnswer(
        "", Finish.TOOL_CALLS, "cheap", "us-east", TokenUsage(5, 5), 10, 0.1, choices=CALLS
    )
    await client(stub).store(request, tier_answer, time.monotonic() + 30)
    [stored] = stub.stored
    assert tools_from_proto(stored.tools) == WEATHER
    assert choices_from_proto(stored.choices) == CALLS


async def test_lookup_sends_the_tenants_error_bound_or_none() -> None:
    stub = Stub()
    await client(stub).lookup(chat(), time.monotonic() + 30)
    bounded = replace(chat(), tenant=replace(chat().tenant, cache_max_wrong_rate=0.01))
    await client(stub).lookup(bounded, time.monotonic() + 30)
    assert [sent.max_wrong_rate for sent in stub.looked_up] == [0.0, pytest.approx(0.01)]

"""Lookup's max_wrong_rate through the servicer: 0 is no bound, a bound with no evidence turns
a semantic candidate into a miss that names it, and a bound outside (0, 1) is
INVALID_ARGUMENT naming the field."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from sluice.cache.v1 import cache_service_pb2 as pb

from tests.unit.cache.fakes import HashingEmbedder
from tests.unit.cache.test_servicer import PARAPHRASE, QUESTION, Served, lookup, serving, store


@pytest.fixture
async def running() -> AsyncIterator[Served]:
    async with serving(HashingEmbedder()) as served:
        yield served


def bounded(text: str, rate: float) -> pb.LookupRequest:
    request = lookup(text)
    request.max_wrong_rate = rate
    return request


async def test_a_bound_without_evidence_names_the_candidate_instead_of_serving_it(
    running: Served,
) -> None:
    stored = await running.stub.Store(store(QUESTION))
    unbounded = await running.stub.Lookup(bounded(PARAPHRASE, 0.0))
    assert unbounded.kind == pb.HIT_KIND_SEMANTIC
    held = await running.stub.Lookup(bounded(PARAPHRASE, 0.01))
    assert (held.kind, held.content, held.rejected) == (pb.HIT_KIND_MISS, "", 1)
    assert held.nearest_rejected.entry_id == stored.entry_id


@pytest.mark.parametrize("rate", [1.0, 1.5, -0.01, float("nan")])
async def test_a_bound_outside_zero_to_one_is_invalid_argument(
    running: Served, rate: float
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await running.stub.Lookup(bounded(QUESTION, rate))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "max_wrong_rate" in (caught.value.details() or "")

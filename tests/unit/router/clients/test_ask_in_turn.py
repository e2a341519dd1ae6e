"""Asking batcher replicas in ranking order: who hands over to the next, and who does not."""

from __future__ import annotations

from typing import Any, cast

import grpc
import pytest

from services.router.clients.batchers import ask_in_turn
from shared.errors import ORIGIN_METADATA_KEY, InvalidRequest, Unavailable


def status(code: grpc.StatusCode, details: str, *, from_sluice: bool) -> grpc.aio.AioRpcError:
    trailing = grpc.aio.Metadata((ORIGIN_METADATA_KEY, "batcher")) if from_sluice else None
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing or grpc.aio.Metadata(), details)


def replicas(*outcomes: object) -> list[tuple[str, Any]]:
    return [(f"10.0.0.{n}:50054", outcome) for n, outcome in enumerate(outcomes, start=1)]


async def answer(outcome: object) -> str:
    if isinstance(outcome, grpc.aio.AioRpcError):
        raise outcome
    return cast(str, outcome)


def not_found(error: grpc.aio.AioRpcError) -> bool:
    return error.code() == grpc.StatusCode.NOT_FOUND


async def test_an_unreachable_replica_hands_over_and_is_named() -> None:
    down = status(grpc.StatusCode.UNAVAILABLE, "connection refused", from_sluice=False)
    got, passed = await ask_in_turn(replicas(down, "job"), answer)
    assert got == "job" and passed == ["10.0.0.1:50054: connection refused"]


async def test_none_when_every_replica_is_unreachable() -> None:
    down = status(grpc.StatusCode.UNAVAILABLE, "refused", from_sluice=False)
    got, passed = await ask_in_turn(replicas(down, down), answer)
    assert got is None and len(passed) == 2


async def test_a_status_the_replica_chose_is_raised_unless_passed_on() -> None:
    missing = status(grpc.StatusCode.NOT_FOUND, "no such job", from_sluice=True)
    got, passed = await ask_in_turn(replicas(missing, "job"), answer, pass_on=not_found)
    assert (got, passed) == ("job", [])
    bad = status(grpc.StatusCode.INVALID_ARGUMENT, "items is empty", from_sluice=True)
    with pytest.raises(InvalidRequest, match="items is empty"):
        await ask_in_turn(replicas(bad, "job"), answer, pass_on=not_found)
    # A Sluice UNAVAILABLE is the replica's own answer, not a dead replica: it is raised.
    refused = status(grpc.StatusCode.UNAVAILABLE, "draining", from_sluice=True)
    with pytest.raises(Unavailable, match="draining"):
        await ask_in_turn(replicas(refused, "job"), answer)

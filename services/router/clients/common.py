"""What every client of another service shares: per-stage timeouts within the request
deadline, and telling "the peer is unreachable" from a status the peer sent on purpose."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from sluice.common.v1 import common_pb2

from services.router.model import ChatRequest, StageName, StageUnavailable
from shared.errors import DeadlineExceeded, error_origin

Clock = Callable[[], float]


def unreachable(error: grpc.aio.AioRpcError) -> bool:
    """True when the peer never answered (down, refusing connections), as opposed to a status
    it chose to send, which carries Sluice's origin metadata."""
    return error.code() == grpc.StatusCode.UNAVAILABLE and error_origin(error) is None


def stage_down(stage: StageName, error: grpc.aio.AioRpcError) -> StageUnavailable:
    """An optional stage failed: the request goes on without it, and the line says why."""
    return StageUnavailable(stage, f"{error.code().name}: {error.details()}")


def stage_timeout(deadline: float, cap: float | None, clock: Clock) -> float:
    remaining = deadline - clock()
    if remaining <= 0:
        raise DeadlineExceeded("the request deadline expired")
    return remaining if cap is None else min(cap, remaining)


def request_context(request: ChatRequest) -> common_pb2.RequestContext:
    return common_pb2.RequestContext(
        tenant_id=request.tenant.tenant_id,
        request_id=request.request_id,
        max_cost_nano_usd=request.max_cost_nano_usd,
    )

"""Execute's path: singleflight first (identical calls share one flight), then, inside the
flight, packing for calls that allow it, else the dispatcher directly."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from sluice.batcher.v1 import batcher_service_pb2 as pb
from sluice.common.v1 import common_pb2

from services.batcher.metrics import BatcherMetrics
from services.batcher.packer import Packer, TokenCount
from services.batcher.singleflight import Shared, Singleflight
from services.batcher.upstream import (
    DispatcherUpstream,
    completion_from_answer,
    packable_shape,
)


@dataclass(frozen=True)
class Executed:
    """A call's answer and how packing treated it."""

    completion: common_pb2.Completion
    packed_size: int = 0
    input_tokens_saved: int = 0
    fallback_reason: str = ""


def flight_key(request: pb.ExecuteRequest) -> bytes:
    """Identical calls of one tenant share a flight; tenants never share one another's. A call
    that allows packing never shares a flight with one that does not, so an answer split out of
    a packed reply only reaches callers that opted in. (The router picks the batcher replica by
    a hash of the tenant and the call, so identical calls from any router meet here.)"""
    digest = hashlib.sha256(request.context.tenant_id.encode())
    digest.update(b"\x01" if request.packable else b"\x00")
    digest.update(request.call.SerializeToString(deterministic=True))
    return digest.digest()


class Executor:
    def __init__(
        self,
        upstream: DispatcherUpstream,
        flights: Singleflight[Executed],
        packer: Packer,
        tokens: TokenCount,
        min_system_tokens: int,
        metrics: BatcherMetrics | None = None,
    ) -> None:
        self._upstream = upstream
        self._flights = flights
        self._packer = packer
        # Many calls share a system prompt; counting its tokens once each would dominate.
        self._system_tokens = functools.lru_cache(maxsize=256)(tokens.count)
        self._min_system_tokens = min_system_tokens
        self._metrics = metrics or BatcherMetrics(CollectorRegistry())

    async def execute(
        self, request: pb.ExecuteRequest, timeout_s: float | None, deadline: float
    ) -> Shared[Executed]:
        """deadline is the caller's deadline in event-loop time (math.inf for none)."""

        async def run() -> Executed:
            if self._packs(request):
                call = self._upstream.packable(request.context, request.call, deadline)
                outcome = await self._packer.execute(call)
                return Executed(
                    completion_from_answer(outcome.answer),
                    outcome.packed_size,
                    outcome.input_tokens_saved,
                    outcome.fallback_reason,
                )
            completion = await self._upstream.dispatch(request.context, request.call, timeout_s)
            return Executed(completion)

        shared = await self._flights.run(flight_key(request), run)
        self._metrics.executed(shared)
        return shared

    def _packs(self, request: pb.ExecuteRequest) -> bool:
        return (
            request.packable
            and self._packer.enabled
            and packable_shape(request.call, self._system_tokens, self._min_system_tokens)
        )

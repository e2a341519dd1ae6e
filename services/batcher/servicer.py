"""Maps BatcherService.Execute onto singleflight and the dispatcher stub; no logic lives here."""

from __future__ import annotations

import hashlib

import grpc
from opentelemetry import trace
from sluice.batcher.v1 import batcher_service_pb2 as pb
from sluice.batcher.v1 import batcher_service_pb2_grpc as pb_grpc
from sluice.dispatcher.v1 import dispatcher_service_pb2 as dispatcher_pb
from sluice.dispatcher.v1 import dispatcher_service_pb2_grpc as dispatcher_grpc

from services.batcher.singleflight import Singleflight
from shared import telemetry as attrs
from shared.errors import (
    ORIGIN_METADATA_KEY,
    InvalidRequest,
    SluiceError,
    Unavailable,
    abort_with,
    error_origin,
)

ORIGIN = "batcher"
Context = grpc.aio.ServicerContext[object, object]


def flight_key(request: pb.ExecuteRequest) -> bytes:
    """Identical calls of one tenant share a flight; tenants never share one another's."""
    digest = hashlib.sha256(request.context.tenant_id.encode())
    digest.update(b"\x00")
    digest.update(request.call.SerializeToString(deterministic=True))
    return digest.digest()


class BatcherServicer(pb_grpc.BatcherServiceServicer):
    def __init__(
        self,
        dispatcher: dispatcher_grpc.RegionalDispatcherServiceAsyncStub,
        flights: Singleflight[dispatcher_pb.DispatchResponse],
        dispatcher_addr: str,
    ) -> None:
        self._dispatcher = dispatcher
        self._flights = flights
        self._dispatcher_addr = dispatcher_addr

    async def Execute(self, request: pb.ExecuteRequest, context: Context) -> pb.ExecuteResponse:
        if not request.call.model or not request.call.messages:
            await abort_with(
                context, ORIGIN, InvalidRequest("call.model and call.messages are required")
            )
        timeout = context.time_remaining()
        dispatch = dispatcher_pb.DispatchRequest(context=request.context, call=request.call)
        try:
            shared = await self._flights.run(
                flight_key(request), lambda: self._dispatcher.Dispatch(dispatch, timeout=timeout)
            )
        except grpc.aio.AioRpcError as error:
            await self._relay(context, error)
        except SluiceError as error:
            await abort_with(context, ORIGIN, error)
        trace.get_current_span().set_attributes(
            {
                attrs.STAGE: "batcher",
                attrs.BATCH_GROUP_SIZE: shared.group_size,
                attrs.BATCH_SHARED: shared.joined,
                # A caller that joined another's flight adds no upstream cost.
                attrs.COST_USD: 0.0
                if shared.joined
                else attrs.usd(shared.value.completion.cost_nano_usd),
            }
        )
        return pb.ExecuteResponse(
            completion=shared.value.completion, shared=shared.joined, group_size=shared.group_size
        )

    async def _relay(self, context: Context, error: grpc.aio.AioRpcError) -> None:
        """Passes the dispatcher's own status through; a dead dispatcher becomes UNAVAILABLE."""
        origin = error_origin(error)
        if origin is None:
            await abort_with(
                context,
                ORIGIN,
                Unavailable(
                    f"dispatcher unreachable at {self._dispatcher_addr}: {error.details()}"
                ),
            )
        context.set_trailing_metadata(((ORIGIN_METADATA_KEY, origin),))
        await context.abort(error.code(), error.details() or "")

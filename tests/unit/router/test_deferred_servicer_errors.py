"""DeferredService tells a caller that the batcher is down without naming its replicas (issue 14
item 8), through a real grpc.aio server."""

from __future__ import annotations

from typing import Any, cast

import grpc
import pytest
from sluice.router.v1 import deferred_service_pb2 as pb
from sluice.router.v1 import deferred_service_pb2_grpc as pb_grpc

from services.router.deferred import DeferredWork
from services.router.deferred_servicer import DeferredServicer
from shared.errors import Unavailable

DOWN = Unavailable("batcher unavailable: replicas 10.9.8.7:50054, 10.9.8.8:50054 refused")


class DownWork:
    """Deferred work whose batcher replicas are all down."""

    async def submit(self, *_: Any) -> Any:
        raise DOWN

    async def get(self, *_: Any) -> Any:
        raise DOWN

    async def cancel(self, *_: Any) -> Any:
        raise DOWN


async def test_unavailable_names_no_replica() -> None:
    server = grpc.aio.server()
    servicer = DeferredServicer(cast(DeferredWork, DownWork()))
    pb_grpc.add_DeferredServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.DeferredServiceStub(channel)
            calls = (
                stub.SubmitDeferred(pb.SubmitDeferredRequest(), metadata=(("x-api-key", "k"),)),
                stub.GetDeferred(pb.GetDeferredRequest(job_id="j"), metadata=(("x-api-key", "k"),)),
                stub.CancelDeferred(
                    pb.CancelDeferredRequest(job_id="j"), metadata=(("x-api-key", "k"),)
                ),
            )
            for call in calls:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call
                details = caught.value.details() or ""
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                assert details.startswith("upstream unavailable") and "10.9.8" not in details
    finally:
        await server.stop(None)

"""Builds and serves the batcher."""

from __future__ import annotations

from sluice.batcher.v1 import batcher_service_pb2 as pb
from sluice.batcher.v1 import batcher_service_pb2_grpc as pb_grpc
from sluice.dispatcher.v1 import dispatcher_service_pb2 as dispatcher_pb
from sluice.dispatcher.v1 import dispatcher_service_pb2_grpc as dispatcher_grpc

from services.batcher.config import Settings
from services.batcher.servicer import BatcherServicer
from services.batcher.singleflight import Singleflight
from shared.grpc_client import open_channel
from shared.grpc_server import HostedServer, build_grpc_server, run_until_terminated
from shared.log import configure_logging
from shared.telemetry import Telemetry, init_telemetry

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BatcherService"].full_name


def build_server(
    settings: Settings,
    dispatcher: dispatcher_grpc.RegionalDispatcherServiceAsyncStub,
    telemetry: Telemetry,
) -> HostedServer:
    servicer = BatcherServicer(
        dispatcher, Singleflight[dispatcher_pb.DispatchResponse](), settings.dispatcher_addr
    )
    return build_grpc_server(
        settings.listen,
        [SERVICE_NAME],
        lambda server: pb_grpc.add_BatcherServiceServicer_to_server(servicer, server),
        telemetry,
    )


async def serve(settings: Settings) -> None:
    configure_logging("batcher", settings.log_level)
    telemetry = init_telemetry("sluice-batcher")
    channel = open_channel(settings.dispatcher_addr, telemetry)
    hosted = build_server(
        settings, dispatcher_grpc.RegionalDispatcherServiceStub(channel), telemetry
    )

    async def close() -> None:
        await channel.close()

    await run_until_terminated(hosted, name="batcher", stop=close, telemetry=telemetry)

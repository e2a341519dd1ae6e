"""The compressor service behind the router's CompressorPort."""

from __future__ import annotations

import time

import grpc
from sluice.compressor.v1 import compressor_service_pb2 as compressor_pb
from sluice.compressor.v1 import compressor_service_pb2_grpc as compressor_grpc

from services.router.clients.common import Clock, request_context, stage_down, stage_timeout
from services.router.model import ChatRequest, Compression, StageName
from shared.convert import turns_from_proto, turns_to_proto


class CompressorClient:
    def __init__(
        self,
        stub: compressor_grpc.PromptCompressorServiceAsyncStub,
        timeout_s: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self._stub = stub
        self._timeout_s = timeout_s
        self._clock = clock

    async def compress(
        self, request: ChatRequest, target_model: str, deadline: float
    ) -> Compression:
        compress = compressor_pb.CompressRequest(
            context=request_context(request),
            messages=turns_to_proto(request.turns),
            target_model=target_model,
        )
        try:
            result = await self._stub.Compress(
                compress, timeout=stage_timeout(deadline, self._timeout_s, self._clock)
            )
        except grpc.aio.AioRpcError as error:
            raise stage_down(StageName.COMPRESSOR, error) from None
        return Compression(
            turns=turns_from_proto(result.messages) if result.compressed else request.turns,
            compressed=result.compressed,
            original_tokens=result.original_tokens,
            compressed_tokens=result.compressed_tokens,
            strategy=result.strategy,
            reason=result.reason,
            cost_nano_usd=result.cost_nano_usd,
        )

"""The compressor service behind the router's CompressorPort.

The model class's `compression:` policy (compression_policy.py) rides in the CompressRequest;
"off" answers here without a call.
"""

from __future__ import annotations

import time

import grpc
from sluice.compressor.v1 import compressor_service_pb2 as compressor_pb
from sluice.compressor.v1 import compressor_service_pb2_grpc as compressor_grpc

from services.router.clients.common import Clock, request_context, stage_down, stage_timeout
from services.router.compression_policy import CompressionPolicy
from services.router.model import ChatRequest, Compression, StageName
from shared.convert import turns_from_proto, turns_to_proto

_STRATEGIES = {
    "extractive": compressor_pb.COMPRESSION_STRATEGY_EXTRACTIVE,
    "dedup": compressor_pb.COMPRESSION_STRATEGY_DEDUP,
    "abstractive": compressor_pb.COMPRESSION_STRATEGY_ABSTRACTIVE,
    "history": compressor_pb.COMPRESSION_STRATEGY_HISTORY,
}


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
        policy = request.model_class.compression or CompressionPolicy()
        if not policy.enabled:
            return _not_sent(
                request, f"compression is off for model class {request.model_class.name}"
            )
        # A token covers at least one UTF-8 byte, so a prompt of fewer bytes than min_tokens is
        # surely below it: the compressor hop (~2 ms of CPU) is spared on short prompts.
        prompt_bytes = sum(len(turn.content.encode()) for turn in request.turns)
        if prompt_bytes < policy.min_tokens:
            return _not_sent(
                request,
                f"below threshold (at most {prompt_bytes} < {policy.min_tokens} tokens; not sent)",
            )
        compress = compressor_pb.CompressRequest(
            context=request_context(request),
            messages=turns_to_proto(request.turns),
            target_model=target_model,
            strategy=_STRATEGIES.get(
                policy.strategy, compressor_pb.COMPRESSION_STRATEGY_UNSPECIFIED
            ),
            target_ratio=policy.target_ratio,
            min_tokens=policy.min_tokens,
            keep_last_turns=policy.keep_last_turns,
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


def _not_sent(request: ChatRequest, reason: str) -> Compression:
    return Compression(
        turns=request.turns,
        compressed=False,
        original_tokens=0,
        compressed_tokens=0,
        strategy="",
        reason=reason,
        cost_nano_usd=0,
    )

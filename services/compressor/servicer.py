"""gRPC face of the compressor: maps CompressRequest/CompressResponse to the domain and back.

It validates what the proto cannot express, turns domain errors into status codes through
shared.errors, and records the decision on the current span. No compression logic lives here.
"""

from __future__ import annotations

from typing import Any

import grpc
import sluice.compressor.v1.compressor_service_pb2 as compressor_pb2
import sluice.compressor.v1.compressor_service_pb2_grpc as compressor_grpc
from opentelemetry import trace

from services.compressor.compressor import (
    CompressionRequest,
    CompressionResult,
    Compressor,
    StrategyName,
)
from shared.convert import turns_from_proto, turns_to_proto
from shared.errors import InvalidRequest, SluiceError, abort_with
from shared.grpc_server import caller_deadline
from shared.telemetry import COMPRESSOR_TOKENS_SAVED, COST_USD, STAGE, usd

ORIGIN = "compressor"
# Span attributes beyond the shared ones: why the prompt was (not) compressed, and its size.
DECISION = "sluice.compressor.decision"
ORIGINAL_TOKENS = "sluice.compressor.original_tokens"
COMPRESSED_TOKENS = "sluice.compressor.compressed_tokens"
STRATEGY = "sluice.compressor.strategy"
# The pays-for-itself decision's figures, in nano-USD: estimated before running, then real.
EXPECTED_SAVING = "sluice.compressor.expected_saving_nano_usd"
EXPECTED_COST = "sluice.compressor.expected_cost_nano_usd"
SAVING = "sluice.compressor.saving_nano_usd"
OWN_COST = "sluice.compressor.own_cost_nano_usd"

_STRATEGIES = {
    compressor_pb2.COMPRESSION_STRATEGY_UNSPECIFIED: StrategyName.EXTRACTIVE,
    compressor_pb2.COMPRESSION_STRATEGY_EXTRACTIVE: StrategyName.EXTRACTIVE,
    compressor_pb2.COMPRESSION_STRATEGY_DEDUP: StrategyName.DEDUP,
    compressor_pb2.COMPRESSION_STRATEGY_ABSTRACTIVE: StrategyName.ABSTRACTIVE,
    compressor_pb2.COMPRESSION_STRATEGY_HISTORY: StrategyName.HISTORY,
}


class PromptCompressorServicer(compressor_grpc.PromptCompressorServiceServicer):
    """Serves PromptCompressorService.Compress from a Compressor."""

    def __init__(self, compressor: Compressor) -> None:
        self._compressor = compressor

    async def Compress(
        self,
        request: compressor_pb2.CompressRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> compressor_pb2.CompressResponse:
        span = trace.get_current_span()
        span.set_attribute(STAGE, ORIGIN)
        try:
            deadline = caller_deadline(context)
            result = await self._compressor.compress(request_from_proto(request, deadline))
        except SluiceError as error:
            await abort_with(context, ORIGIN, error)
            raise  # not reached: abort_with raises; this tells readers and type checkers so
        span.set_attributes(span_attributes(result))
        return response_to_proto(result)


def span_attributes(result: CompressionResult) -> dict[str, str | int | float]:
    """The decision and its figures; absent figures (not priced, not run) are left off."""
    attributes: dict[str, str | int | float] = {
        DECISION: result.decision.value,
        STRATEGY: result.strategy,
        ORIGINAL_TOKENS: result.original_tokens,
        COMPRESSED_TOKENS: result.compressed_tokens,
        COMPRESSOR_TOKENS_SAVED: result.tokens_saved,
        COST_USD: usd(result.cost_nano_usd),
    }
    for payoff, saving_key, cost_key in (
        (result.expected, EXPECTED_SAVING, EXPECTED_COST),
        (result.actual, SAVING, OWN_COST),
    ):
        if payoff is None:
            continue
        attributes[cost_key] = payoff.cost_nano_usd
        if payoff.saving_nano_usd is not None:
            attributes[saving_key] = payoff.saving_nano_usd
    return attributes


def request_from_proto(
    request: compressor_pb2.CompressRequest, deadline: float | None = None
) -> CompressionRequest:
    """Validates and converts a request; errors name the offending field."""
    if not request.messages:
        raise InvalidRequest("messages must not be empty")
    ratio = request.target_ratio
    if ratio != 0.0 and not 0.0 < ratio <= 1.0:  # written so that NaN is rejected too
        raise InvalidRequest(
            f"target_ratio={ratio} must be within (0, 1], or 0 for the service default"
        )
    if request.strategy not in _STRATEGIES:
        raise InvalidRequest(f"strategy={request.strategy} is not a known CompressionStrategy")
    if request.keep_last_turns < 0:
        raise InvalidRequest(f"keep_last_turns={request.keep_last_turns} must be >= 0")
    if request.min_tokens < 0:
        raise InvalidRequest(f"min_tokens={request.min_tokens} must be >= 0")
    return CompressionRequest(
        turns=turns_from_proto(request.messages),
        target_ratio=ratio if ratio != 0.0 else None,
        target_model=request.target_model,
        deadline=deadline,
        strategy=_STRATEGIES[request.strategy],
        keep_last_turns=request.keep_last_turns or None,
        min_tokens=request.min_tokens or None,
    )


def response_to_proto(result: CompressionResult) -> compressor_pb2.CompressResponse:
    return compressor_pb2.CompressResponse(
        messages=turns_to_proto(result.turns),
        compressed=result.compressed,
        original_tokens=result.original_tokens,
        compressed_tokens=result.compressed_tokens,
        strategy=result.strategy,
        reason=result.reason,
        cost_nano_usd=result.cost_nano_usd,
        saving_nano_usd=result.saving_nano_usd,
        decision=result.decision.value,
    )

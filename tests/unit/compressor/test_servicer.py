"""The gRPC mapping on a real in-process grpc.aio server: status codes, fields, span attributes."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
import pytest
import sluice.compressor.v1.compressor_service_pb2 as compressor_pb2
import sluice.compressor.v1.compressor_service_pb2_grpc as compressor_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sluice.common.v1 import common_pb2

from services.compressor.config import Settings
from services.compressor.server import build_compressor, build_server
from shared.errors import error_origin
from shared.telemetry import Telemetry

from .fakes import HashingEmbedder

LONG = " ".join(f"Record {i} says the depot {i} holds {i * 3} crates." for i in range(150))
QUESTION = "How many crates does depot 77 hold?"
# The async stub class exists for type checkers only, hence the string.
StartServer = Callable[..., Awaitable["Stub"]]

if TYPE_CHECKING:
    Stub = compressor_grpc.PromptCompressorServiceAsyncStub


def user(text: str) -> common_pb2.ChatMessage:
    return common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def start_server(exporter: InMemorySpanExporter) -> AsyncIterator[StartServer]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry(provider=provider)
    servers: list[grpc.aio.Server] = []
    channels: list[grpc.aio.Channel] = []

    async def start(loaded: bool = True) -> Stub:
        settings = Settings.from_env(
            {
                "SLUICE_COMPRESSOR_LISTEN": "127.0.0.1:0",
                "SLUICE_COMPRESSOR_MIN_TOKENS": "500",
                "SLUICE_COMPRESSOR_TARGET_RATIO": "0.3",
            }
        )
        # The service's own wiring (dedup, history, prices), with a bag-of-words embedder.
        compressor = build_compressor(settings, HashingEmbedder(loaded=loaded))
        hosted = build_server(settings, compressor, telemetry)
        await hosted.server.start()
        servers.append(hosted.server)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{hosted.port}")
        channels.append(channel)
        return compressor_grpc.PromptCompressorServiceStub(channel)

    yield start
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.stop(None)
    provider.shutdown()


async def rejected(stub: Stub, request: compressor_pb2.CompressRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Compress(request)
    assert error_origin(caught.value) == "compressor"
    return caught.value


async def test_long_prompt_is_compressed(start_server: StartServer) -> None:
    stub = await start_server()
    response = await stub.Compress(
        compressor_pb2.CompressRequest(messages=[user(f"{LONG}\n\n{QUESTION}")])
    )
    assert response.compressed
    assert response.strategy == "extractive"
    assert response.compressed_tokens < response.original_tokens * 0.4
    assert response.cost_nano_usd == 0
    assert len(response.messages) == 1
    content = response.messages[0].content
    assert response.messages[0].role == common_pb2.ROLE_USER
    assert "Record 77 says the depot 77 holds 231 crates." in content
    assert content.endswith(QUESTION)


async def test_short_prompt_is_untouched(start_server: StartServer) -> None:
    stub = await start_server()
    messages = [
        common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content="Be terse.", name="policy"),
        user(QUESTION),
    ]
    response = await stub.Compress(compressor_pb2.CompressRequest(messages=messages))
    assert not response.compressed
    assert list(response.messages) == messages
    assert response.original_tokens == response.compressed_tokens
    assert response.reason.startswith("below threshold (")
    assert response.strategy == ""


async def test_span_carries_stage_and_decision(
    start_server: StartServer, exporter: InMemorySpanExporter
) -> None:
    stub = await start_server()
    response = await stub.Compress(
        compressor_pb2.CompressRequest(
            messages=[user(f"{LONG}\n\n{QUESTION}")], target_model="gpt-4o"
        )
    )
    for _ in range(100):  # the server span ends just after the response is sent
        spans = [s for s in exporter.get_finished_spans() if s.name.endswith("/Compress")]
        if spans:
            break
        await asyncio.sleep(0.01)
    attributes = dict(spans[0].attributes or {})
    assert attributes["sluice.stage"] == "compressor"
    assert attributes["sluice.compressor.decision"] == "compressed"
    assert attributes["sluice.compressor.strategy"] == "extractive"
    assert attributes["sluice.compressor.original_tokens"] == response.original_tokens
    assert attributes["sluice.compressor.compressed_tokens"] == response.compressed_tokens
    assert attributes["sluice.compressor.tokens_saved"] == (
        response.original_tokens - response.compressed_tokens
    )
    assert attributes["sluice.cost.usd"] == 0.0
    # The pays-for-itself figures: expected before running and real after, both priced.
    saved = response.original_tokens - response.compressed_tokens
    assert (
        attributes["sluice.compressor.saving_nano_usd"] == saved * 2500 == response.saving_nano_usd
    )
    assert attributes["sluice.compressor.own_cost_nano_usd"] == round(
        0.5 * response.original_tokens
    )
    expected_saving = attributes["sluice.compressor.expected_saving_nano_usd"]
    expected_cost = attributes["sluice.compressor.expected_cost_nano_usd"]
    assert isinstance(expected_saving, int) and isinstance(expected_cost, int)
    assert 0 < expected_cost < expected_saving
    assert response.decision == "compressed"
    assert f"saving {saved * 2500} nano-USD" in response.reason


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("keep_last_turns", -1, "keep_last_turns=-1 must be >= 0"),
        ("min_tokens", -5, "min_tokens=-5 must be >= 0"),
        ("strategy", 99, "strategy=99 is not a known CompressionStrategy"),
    ],
)
async def test_bad_policy_fields_are_invalid(
    start_server: StartServer, field: str, value: int, message: str
) -> None:
    stub = await start_server()
    request = compressor_pb2.CompressRequest(messages=[user(QUESTION)])
    setattr(request, field, value)
    error = await rejected(stub, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == message


async def test_request_min_tokens_and_dedup_strategy_are_used(start_server: StartServer) -> None:
    stub = await start_server()
    repeated = "The depot on the north quay holds the spare anchor chains."
    text = f"{repeated}\n\n{repeated}\n\nWhere are the chains?"
    response = await stub.Compress(
        compressor_pb2.CompressRequest(
            messages=[user(text)],
            min_tokens=1,
            strategy=compressor_pb2.COMPRESSION_STRATEGY_DEDUP,
        )
    )
    assert response.compressed
    assert response.strategy == "dedup"
    assert response.messages[0].content == f"{repeated}\n\nWhere are the chains?"
    assert not response.HasField("saving_nano_usd")  # no target model, so no price


async def test_no_messages_is_invalid(start_server: StartServer) -> None:
    error = await rejected(await start_server(), compressor_pb2.CompressRequest())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "messages" in (error.details() or "")


async def test_unknown_role_is_invalid(start_server: StartServer) -> None:
    request = compressor_pb2.CompressRequest(
        messages=[user("hi"), common_pb2.ChatMessage(content="who am I?")]
    )
    error = await rejected(await start_server(), request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "messages[1].role" in (error.details() or "")


@pytest.mark.parametrize("ratio", [-0.5, 1.01, 7.0, math.nan, math.inf])
async def test_target_ratio_outside_unit_interval_is_invalid(
    start_server: StartServer, ratio: float
) -> None:
    request = compressor_pb2.CompressRequest(messages=[user(QUESTION)], target_ratio=ratio)
    error = await rejected(await start_server(), request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "target_ratio" in (error.details() or "")


async def test_request_ratio_is_used(start_server: StartServer) -> None:
    stub = await start_server()
    text = f"{LONG}\n\n{QUESTION}"
    loose = await stub.Compress(
        compressor_pb2.CompressRequest(messages=[user(text)], target_ratio=0.9)
    )
    tight = await stub.Compress(
        compressor_pb2.CompressRequest(messages=[user(text)], target_ratio=0.1)
    )
    assert tight.compressed_tokens < loose.compressed_tokens


async def test_model_not_loaded_is_unavailable(start_server: StartServer) -> None:
    error = await rejected(
        await start_server(loaded=False), compressor_pb2.CompressRequest(messages=[user("hi")])
    )
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_call_with_a_deadline_is_served(start_server: StartServer) -> None:
    stub = await start_server()
    request = compressor_pb2.CompressRequest(messages=[user(f"{LONG}\n\n{QUESTION}")])
    response = await stub.Compress(request, timeout=30)
    assert response.compressed

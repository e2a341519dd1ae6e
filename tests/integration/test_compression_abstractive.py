"""Abstractive compression through the real mesh: compressor -> dispatcher -> simulator.

The summary is a real Dispatch call, so its cost comes back from the dispatcher and must be
counted in CompressResponse.cost_nano_usd and weighed against the saving.
"""

from __future__ import annotations

import grpc
import pytest
import sluice.compressor.v1.compressor_service_pb2 as compressor_pb2
import sluice.compressor.v1.compressor_service_pb2_grpc as compressor_grpc
from sluice.common.v1 import common_pb2

from shared.mesh import Mesh
from tests.integration.test_compressor_service import long_prompt

pytestmark = pytest.mark.integration


def compress(mesh: Mesh, target_model: str) -> compressor_pb2.CompressResponse:
    request = compressor_pb2.CompressRequest(
        messages=[
            common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content="Be brief."),
            common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=long_prompt()),
        ],
        target_model=target_model,
        strategy=compressor_pb2.COMPRESSION_STRATEGY_ABSTRACTIVE,
        target_ratio=0.25,
    )
    with grpc.insecure_channel(mesh.address("compressor")) as channel:
        stub = compressor_grpc.PromptCompressorServiceStub(channel)
        response: compressor_pb2.CompressResponse = stub.Compress(request, timeout=60)
        return response


def test_summary_comes_from_the_cheap_tier_and_its_cost_is_counted(mesh: Mesh) -> None:
    response = compress(mesh, "gpt-4o")
    assert response.decision == "compressed", response.reason
    assert response.strategy == "abstractive"
    assert "summarised 1 turns with Qwen/Qwen3-8B" in response.reason
    assert response.cost_nano_usd > 0
    assert response.saving_nano_usd > response.cost_nano_usd
    assert response.compressed_tokens < 0.5 * response.original_tokens
    assert response.messages[0].content == "Be brief."
    assert response.messages[1].content.endswith("In which shed is the spare anchor chain kept?")


def test_summary_is_not_bought_when_the_target_is_cheap(mesh: Mesh) -> None:
    # At deepseek-v4-flash's input price the saving is smaller than the summary would cost.
    response = compress(mesh, "deepseek-v4-flash")
    assert response.decision == "not_worth_it"
    assert not response.compressed
    assert response.cost_nano_usd == 0
    assert "abstractive not worth it: expected saving" in response.reason

"""The model class's `compression:` block: validation, and what the router sends the compressor."""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from typing import Any, cast

import pytest
from sluice.compressor.v1 import compressor_service_pb2 as compressor_pb

from services.router.clients.compressor import CompressorClient
from services.router.compression_policy import CompressionPolicy
from services.router.policy import PolicyError, parse_policy
from shared.chat import Role, Turn
from tests.unit.router.fixtures import catalogue, policy_doc
from tests.unit.router.learned_rig import chat_request

WHERE = "tenants.acme.model_classes.chat.compression"


def with_compression(block: Any) -> dict[str, Any]:
    doc = copy.deepcopy(policy_doc())
    doc["tenants"]["acme"]["model_classes"]["chat"]["compression"] = block
    return cast(dict[str, Any], doc)


def test_block_is_parsed_and_absent_means_none() -> None:
    block = {"strategy": "history", "target_ratio": 0.25, "min_tokens": 800, "keep_last_turns": 6}
    parsed = parse_policy(with_compression(block), catalogue())
    assert parsed.tenants["acme"].model_class("chat").compression == CompressionPolicy(
        "history", 0.25, 800, 6
    )
    plain = parse_policy(policy_doc(), catalogue())
    assert plain.tenants["acme"].model_class("chat").compression is None


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("fast", f"{WHERE} must be a mapping"),
        ({"ratio": 0.5}, rf"{WHERE}: unknown keys \['ratio'\]"),
        ({"strategy": "magic"}, rf"{WHERE}.strategy must be one of .*not 'magic'"),
        ({"target_ratio": 0}, rf"{WHERE}.target_ratio must be a number within \(0, 1\]"),
        ({"target_ratio": 1.5}, rf"{WHERE}.target_ratio must be"),
        ({"target_ratio": "half"}, rf"{WHERE}.target_ratio must be"),
        ({"target_ratio": float("nan")}, rf"{WHERE}.target_ratio must be"),
        ({"min_tokens": -1}, rf"{WHERE}.min_tokens must be a non-negative whole number"),
        ({"keep_last_turns": 2.5}, rf"{WHERE}.keep_last_turns must be a non-negative"),
        ({"keep_last_turns": True}, rf"{WHERE}.keep_last_turns must be a non-negative"),
    ],
)
def test_bad_blocks_name_the_field(block: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(with_compression(block), catalogue())


class RecordingCompressor:
    def __init__(self) -> None:
        self.seen: list[compressor_pb.CompressRequest] = []

    async def Compress(
        self, request: compressor_pb.CompressRequest, **options: Any
    ) -> compressor_pb.CompressResponse:
        self.seen.append(request)
        return compressor_pb.CompressResponse(compressed=False, reason="below threshold")


async def test_client_sends_the_policy_in_the_request() -> None:
    block = {
        "strategy": "abstractive",
        "target_ratio": 0.2,
        "min_tokens": 900,
        "keep_last_turns": 3,
    }
    stub = RecordingCompressor()
    client = CompressorClient(cast(Any, stub), timeout_s=5.0)
    chat = chat_request({"compression": block}, {})
    # Long enough (in bytes) that the client cannot rule out 900 tokens by itself.
    chat = replace(chat, turns=(Turn(Role.USER, "context " * 200),))
    await client.compress(chat, "cheap", time.monotonic() + 5)
    (sent,) = stub.seen
    assert sent.strategy == compressor_pb.COMPRESSION_STRATEGY_ABSTRACTIVE
    assert sent.target_ratio == pytest.approx(0.2)
    assert (sent.min_tokens, sent.keep_last_turns, sent.target_model) == (900, 3, "cheap")


async def test_off_skips_the_call() -> None:
    stub = RecordingCompressor()
    client = CompressorClient(cast(Any, stub), timeout_s=5.0)
    chat = chat_request({"compression": {"strategy": "off"}}, {})
    result = await client.compress(chat, "cheap", time.monotonic() + 5)
    assert stub.seen == []
    assert not result.compressed
    assert result.reason == "compression is off for model class chat"

"""The compressor client sends the class's compression policy, and spares the hop for prompts
that are surely under its min_tokens."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, cast

from sluice.compressor.v1 import compressor_service_pb2 as pb

from services.router.clients.compressor import CompressorClient
from shared.chat import Role, Turn
from tests.unit.router.learned_rig import chat_request


@dataclass
class RecordingCompressor:
    seen: list[pb.CompressRequest] = field(default_factory=list)

    async def Compress(self, request: pb.CompressRequest, **options: Any) -> pb.CompressResponse:
        self.seen.append(request)
        return pb.CompressResponse(compressed=False, reason="below threshold (400 < 1500 tokens)")


async def compress(
    prompt: str, compression: dict[str, Any]
) -> tuple[str, list[pb.CompressRequest]]:
    chat = chat_request({"compression": compression}, {})
    chat = replace(chat, turns=(Turn(Role.USER, prompt),))
    stub = RecordingCompressor()
    client = CompressorClient(cast(Any, stub), timeout_s=5)
    result = await client.compress(chat, "cheap", time.monotonic() + 5)
    return result.reason, stub.seen


async def test_a_prompt_with_fewer_bytes_than_min_tokens_is_not_sent() -> None:
    reason, sent = await compress("x" * 1499, {"min_tokens": 1500})
    assert sent == []
    assert reason == "below threshold (at most 1499 < 1500 tokens; not sent)"


async def test_a_prompt_that_may_reach_min_tokens_is_sent_with_the_policy() -> None:
    # 600 characters of three UTF-8 bytes each could be 1,800 tokens: only the service can tell.
    reason, sent = await compress("語" * 600, {"min_tokens": 1500, "strategy": "dedup"})
    assert len(sent) == 1 and reason.startswith("below threshold (400")
    assert sent[0].min_tokens == 1500
    assert sent[0].strategy == pb.COMPRESSION_STRATEGY_DEDUP

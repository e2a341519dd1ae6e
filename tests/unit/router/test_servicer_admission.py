"""RouterService refuses bad input with INVALID_ARGUMENT naming the field, and its UNAVAILABLE
messages name no internal endpoint (issue 14 items 2 and 8), through a real grpc.aio server."""

from __future__ import annotations

import grpc
import pytest
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as pb
from sluice.router.v1 import router_service_pb2_grpc as pb_grpc

from shared.errors import Unavailable
from tests.unit.router.door_rig import API_KEY, InstantPipeline, grpc_door

KEY = (("x-api-key", API_KEY),)


def request(content: str = "hello", **fields: object) -> pb.CompleteRequest:
    message = common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=content)
    return pb.CompleteRequest(messages=[message], **fields)  # type: ignore[arg-type]


async def status(call: pb.CompleteRequest, pipeline: InstantPipeline | None = None):
    async with grpc_door(pipeline) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.RouterServiceStub(channel).Complete(call, metadata=KEY, timeout=30)
    return caught.value.code(), caught.value.details() or ""


async def test_an_unknown_cache_mode_is_invalid_argument() -> None:
    code, details = await status(request(cache_mode=77))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "cache_mode 77 is unknown" in details


async def test_known_cache_modes_are_served() -> None:
    async with grpc_door() as channel:
        stub = pb_grpc.RouterServiceStub(channel)
        for mode in (pb.CACHE_MODE_UNSPECIFIED, pb.CACHE_MODE_BYPASS):
            answer = await stub.Complete(request(cache_mode=mode), metadata=KEY, timeout=30)
            assert answer.content == "ok"


@pytest.mark.parametrize("invisible", ["\u200b\u200b", "\ufeff", "\u2060 \u200d"])
async def test_a_prompt_of_invisible_characters_is_empty(invisible: str) -> None:
    code, details = await status(request(invisible))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "messages[0].content is empty" in details


async def test_long_inputs_are_not_echoed_in_full() -> None:
    code, details = await status(request(model_class="m" * 10_000))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown model_class" in details and len(details) < 300
    code, details = await status(
        request(context=common_pb2.RequestContext(request_id="r" * 10_000))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "context.request_id" in details and len(details) < 300


async def test_unavailable_names_no_internal_endpoint() -> None:
    down = Unavailable("no tier could be reached: dispatcher unavailable at 10.1.2.3:50055")
    code, details = await status(request(), InstantPipeline(down))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert details.startswith("upstream unavailable") and "10.1.2.3" not in details


async def test_an_empty_stop_sequence_is_invalid_argument() -> None:
    # Found by the fuzzer: the upstream refused it, and its own text reached the caller.
    code, details = await status(request(sampling=common_pb2.SamplingParams(stop=["", "x"])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "sampling.stop has an empty entry" in details

"""Bad input gets a clear status whose message names the problem."""

from __future__ import annotations

import re

import grpc
import pytest
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as router_pb

from shared.mesh import Mesh
from tests.support import DEV_KEY, ask, router_stub

pytestmark = pytest.mark.integration


async def status_of(
    channel: grpc.aio.Channel, request: router_pb.CompleteRequest, metadata: tuple = DEV_KEY
) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router_stub(channel).Complete(request, metadata=metadata, timeout=30)
    return caught.value.code(), caught.value.details() or ""


@pytest.mark.parametrize(
    ("request_factory", "code", "message"),
    [
        (
            router_pb.CompleteRequest,
            grpc.StatusCode.INVALID_ARGUMENT,
            "messages is empty",
        ),
        (
            lambda: ask("hi", model_class="poetry"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown model_class 'poetry'",
        ),
        (
            lambda: ask("word " * 140_000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "request too large: the prompt has",
        ),
        (
            lambda: router_pb.CompleteRequest(messages=[common_pb2.ChatMessage(content="no role")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            r"messages\[0\].role is unset",
        ),
        (
            lambda: router_pb.CompleteRequest(
                messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="hi")],
                sampling=common_pb2.SamplingParams(temperature=9),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "temperature",
        ),
    ],
)
async def test_invalid_requests(
    channel: grpc.aio.Channel, mesh: Mesh, request_factory, code, message: str
) -> None:
    got_code, details = await status_of(channel, request_factory())
    assert got_code == code
    assert re.search(message, details), details


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ((), "missing API key"),
        ((("x-api-key", "wrong"),), "unknown API key"),
        ((("authorization", "Bearer wrong"),), "unknown API key"),
    ],
)
async def test_authentication(
    channel: grpc.aio.Channel, mesh: Mesh, metadata: tuple, message: str
) -> None:
    code, details = await status_of(channel, ask("hi"), metadata)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert message in details


async def test_bearer_token_is_accepted(channel: grpc.aio.Channel, mesh: Mesh) -> None:
    response = await router_stub(channel).Complete(
        ask("What is the capital of France?"),
        metadata=(("authorization", "Bearer dev"),),
        timeout=30,
    )
    assert response.content

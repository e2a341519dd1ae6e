"""Property-based fuzzing of the router's front doors (issue 14, Must show 5): the HTTP app in
process through httpx's ASGI transport, and RouterService's admission through a real grpc.aio
server on loopback, both over a pipeline that answers at once. Whatever is sent: no 5xx, no
hang, and every refusal a 4xx (HTTP) or INVALID_ARGUMENT (gRPC) whose message names the field.

`make test` runs SLUICE_FUZZ_EXAMPLES (6,000) generated requests in all, in well under a
minute; a long run is `SLUICE_FUZZ_EXAMPLES=50000 .venv/bin/pytest tests/fuzz`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from sluice.router.v1 import router_service_pb2_grpc as pb_grpc

from tests.fuzz.strategies import TOTAL_EXAMPLES, GrpcCase, HttpCase, grpc_cases, http_cases
from tests.unit.router.door_rig import API_KEY, HEADERS, door_app, grpc_door, http_client

# A hang is a failure, not a slow example: no request to an instant pipeline takes this long.
HANG_S = 30.0
HTTP_EXAMPLES = TOTAL_EXAMPLES * 3 // 5
GRPC_EXAMPLES = TOTAL_EXAMPLES - HTTP_EXAMPLES
# Reproducible on CI: the same examples every run, no example database between runs; no
# per-example deadline on a busy machine (hangs are caught by HANG_S instead).
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for every example of a test (a loop per example would dominate)."""
    running = asyncio.new_event_loop()
    yield running
    running.close()


def check_http(case: HttpCase, status: int, body: bytes, content_type: str) -> None:
    assert status < 500, (status, body[:300])
    if status < 400:
        return  # valid, or a hostile value that happens to be a valid one (null, a known model)
    assert content_type.startswith("application/json"), (status, body[:300])
    error = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"], error
    assert case.field != "", f"a valid body was refused: {error}"
    if case.field is not None:
        assert case.field in error["message"], (case.field, error["message"])


def test_http_front_door(loop: asyncio.AbstractEventLoop) -> None:
    client = http_client(door_app(max_prompt_tokens=10_000_000))
    sent = 0

    @settings(FUZZ, max_examples=HTTP_EXAMPLES)
    # The rig's `vision` class takes images, so valid bodies may hold them.
    @given(case=http_cases(image_class="vision"))
    def one(case: HttpCase) -> None:
        nonlocal sent
        sent += 1
        response = loop.run_until_complete(
            asyncio.wait_for(
                client.post("/v1/chat/completions", content=case.body, headers=HEADERS), HANG_S
            )
        )
        check_http(case, response.status_code, response.content, response.headers["content-type"])

    try:
        one()
    finally:
        loop.run_until_complete(client.aclose())
    assert sent >= HTTP_EXAMPLES


def check_grpc(case: GrpcCase, error: grpc.aio.AioRpcError | None) -> None:
    if error is None:
        return  # accepted (the hostile value happened to be a valid one)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (case.field, error)
    assert case.field, f"a valid request was refused: {error.details()}"
    assert case.field in (error.details() or ""), (case.field, error.details())


def test_grpc_admission(loop: asyncio.AbstractEventLoop) -> None:
    door = grpc_door(max_prompt_tokens=10_000_000)
    channel = loop.run_until_complete(door.__aenter__())
    stub = pb_grpc.RouterServiceStub(channel)
    metadata = (("x-api-key", API_KEY),)
    sent = 0

    async def call(case: GrpcCase) -> grpc.aio.AioRpcError | None:
        nonlocal sent
        sent += 1
        try:
            await stub.Complete(case.request, metadata=metadata, timeout=HANG_S)
        except grpc.aio.AioRpcError as error:
            return error
        return None

    @settings(FUZZ, max_examples=GRPC_EXAMPLES)
    @given(case=grpc_cases())
    def one(case: GrpcCase) -> None:
        error = loop.run_until_complete(call(case))
        assert error is None or error.code() != grpc.StatusCode.DEADLINE_EXCEEDED, "a hang"
        check_grpc(case, error)

    try:
        one()
    finally:
        loop.run_until_complete(door.__aexit__(None, None, None))
    assert sent >= GRPC_EXAMPLES

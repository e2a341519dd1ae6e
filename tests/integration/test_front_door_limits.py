"""Nothing one caller sends stalls the front doors (issue 14 items 1 and 5, Must show 2).

The first tests speak raw HTTP over real sockets to a real uvicorn server (the router's own
HttpServer, with small limits so they trigger quickly); the last ones run against the router
process of the shared mesh with its default limits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import httpx
import orjson
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import given, settings
from sluice.router.v1 import router_service_pb2 as router_pb
from sluice.router.v1 import router_service_pb2_grpc as router_grpc

from services.router.http_api import HttpServer
from services.router.http_limits import MIB, DoorLimits
from shared.mesh import Mesh
from tests.fuzz.strategies import GrpcCase, HttpCase, grpc_cases, http_cases
from tests.fuzz.test_front_doors import FUZZ, check_http
from tests.support import DEV_KEY, ask, router_stub
from tests.unit.router.door_rig import door_app

pytestmark = pytest.mark.integration
LIMITS = DoorLimits(
    max_body_bytes=64 * 1024, max_header_bytes=8 * 1024, header_timeout_s=1.0, body_timeout_s=1.0
)
# Generous: each limit is 1 s; the machine may be busy.
PATIENCE_S = 20.0
POST = b"POST /v1/chat/completions HTTP/1.1\r\nhost: door\r\nauthorization: Bearer acme-key\r\n"


@pytest_asyncio.fixture
async def door() -> AsyncIterator[int]:
    server = HttpServer(door_app(limits=LIMITS), "127.0.0.1:0", LIMITS)
    port = await server.start()
    yield port
    await server.stop()


async def response_head(reader: asyncio.StreamReader) -> bytes:
    """The response's status line and headers, or b"" when the server just closed."""
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE_S)
    except asyncio.IncompleteReadError as partial:
        return partial.partial


async def test_a_32_mb_header_is_refused_with_431(door: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", door)
    writer.write(POST + b"x-big: ")
    answer = asyncio.ensure_future(response_head(reader))
    sent = 0
    try:
        while sent < 32 * MIB and not answer.done():
            writer.write(b"a" * 65536)
            await writer.drain()
            sent += 65536
    except ConnectionError:
        pass  # the server stopped listening to the rest, as it should
    head = await answer
    writer.close()
    assert head.startswith(b"HTTP/1.1 431"), head[:200]
    assert sent < 4 * MIB, "refused as soon as the limit was passed, not after 32 MB"


async def test_a_slow_header_connection_is_closed_after_the_header_timeout(door: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", door)
    started = time.monotonic()
    writer.write(POST)
    closed = asyncio.ensure_future(reader.read())  # returns once the server closes
    try:
        while not closed.done() and time.monotonic() - started < PATIENCE_S:
            writer.write(b"x-slow: 1\r\n")  # a header line now and then, never the blank line
            await writer.drain()
            await asyncio.wait({closed}, timeout=0.2)
    except ConnectionError:
        pass
    assert closed.done(), "a slowloris connection was still open after 20 s"
    assert closed.result().startswith(b"HTTP/1.1 408")
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed(door: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", door)
    assert await asyncio.wait_for(reader.read(), PATIENCE_S) == b""
    writer.close()


async def test_a_body_shorter_than_its_content_length_times_out_with_408(door: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", door)
    writer.write(POST + b'content-type: application/json\r\ncontent-length: 100\r\n\r\n{"mess')
    await writer.drain()
    head = await response_head(reader)
    body = await asyncio.wait_for(reader.read(), PATIENCE_S)
    writer.close()
    assert head.startswith(b"HTTP/1.1 408"), head
    assert orjson.loads(body)["error"]["code"] == "request_timeout"


async def test_a_declared_oversize_body_is_refused_before_it_is_sent(door: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", door)
    writer.write(POST + b"content-length: 1000000000\r\n\r\n")
    await writer.drain()
    head = await response_head(reader)
    body = await asyncio.wait_for(reader.read(), PATIENCE_S)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413"), head
    assert str(LIMITS.max_body_bytes) in orjson.loads(body)["error"]["message"]


async def test_a_chunked_body_is_counted_as_it_arrives(door: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", door)
    chunk = b"a" * 16384
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5))  # 80 KiB > 64
    writer.write(POST + b"transfer-encoding: chunked\r\n\r\n" + chunks)
    await writer.drain()
    head = await response_head(reader)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413"), head


async def test_requests_within_the_limits_are_served_on_a_kept_alive_connection(door: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{door}", timeout=30) as client:
        for _ in range(2):
            response = await client.post(
                "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "a" * 30_000}]},
                headers={"authorization": "Bearer acme-key"},
            )
            assert response.status_code == 200, response.text


# --- the router process of the shared mesh, default limits (8 MiB) ---------------------------

MAX_BYTES = DoorLimits().max_body_bytes
SMALL_CALL_LIMIT_S = 0.1


def test_the_router_refuses_an_oversize_body_and_message(mesh: Mesh) -> None:
    response = httpx.post(
        f"http://{mesh.address('router_http')}/v1/chat/completions",
        content=b"{" + b" " * MAX_BYTES + b"}",
        headers={"authorization": "Bearer dev"},
        timeout=60,
    )
    assert response.status_code == 413 and str(MAX_BYTES) in response.json()["error"]["message"]


async def test_the_router_refuses_an_oversize_grpc_message(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router_stub(channel).Complete(
            ask("a" * (MAX_BYTES + 1)), metadata=DEV_KEY, timeout=60
        )
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def send_big_http(mesh: Mesh, body: bytes) -> int:
    response = httpx.post(
        f"http://{mesh.address('router_http')}/v1/chat/completions",
        content=body,
        headers={"authorization": "Bearer dev"},
        timeout=120,
    )
    return response.status_code


def send_big_grpc(mesh: Mesh, request: router_pb.CompleteRequest) -> grpc.StatusCode:
    # A connection of its own, as another client's would be: on a shared one, the small calls'
    # frames would queue behind its 8 MiB in the client's HTTP/2 connection.
    with grpc.insecure_channel(mesh.address("router")) as own:
        try:
            router_grpc.RouterServiceStub(own).Complete(request, metadata=DEV_KEY, timeout=120)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


async def small_calls(
    mesh: Mesh, channel: grpc.aio.Channel, http: httpx.AsyncClient
) -> dict[str, float]:
    """One gRPC health check, one small gRPC Complete and two small HTTP requests, each
    answered by the router itself (a refusal or a listing), timed one by one."""
    health = health_pb2_grpc.HealthStub(channel)

    async def grpc_small() -> None:
        with pytest.raises(grpc.aio.AioRpcError):
            await router_stub(channel).Complete(ask("hi", model_class="nope"), metadata=DEV_KEY)

    async def http_small() -> None:
        response = await http.post("/chat/completions", json={"messages": []})
        assert response.status_code == 400

    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "grpc health": lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=10),
        "grpc Complete": grpc_small,
        "http models": lambda: http.get("/models"),
        "http chat": http_small,
    }
    latencies = {}
    for name, call in calls.items():
        started = time.perf_counter()
        await call()
        latencies[name] = time.perf_counter() - started
    return latencies


async def measure_while(
    big: Callable[[], Awaitable[object]], mesh: Mesh
) -> tuple[int, dict[str, float], object]:
    """Runs rounds of small calls from the moment the big request starts until it is answered;
    returns how many rounds ran meanwhile, each call's worst latency and the big one's answer."""
    headers = {"authorization": "Bearer dev"}
    async with (
        grpc.aio.insecure_channel(mesh.address("router")) as channel,
        httpx.AsyncClient(
            base_url=f"http://{mesh.address('router_http')}/v1", headers=headers, timeout=10
        ) as http,
    ):
        await small_calls(mesh, channel, http)  # warm: connections open, stubs ready
        task = asyncio.ensure_future(big())
        worst: dict[str, float] = {}
        rounds = 0
        while not task.done():
            for name, latency in (await small_calls(mesh, channel, http)).items():
                worst[name] = max(worst.get(name, 0.0), latency)
            rounds += 1 if not task.done() else 0
        answer = await task
    return rounds, worst, answer


async def test_small_calls_answer_within_100ms_while_a_max_size_request_is_admitted(
    mesh: Mesh,
) -> None:
    # The largest request each limit allows, of 8 MiB of "a" without a space (the slowest text
    # to count), built beforehand and sent from a thread: the test's own event loop only
    # measures.
    content = "a" * (MAX_BYTES - 1024)
    body = orjson.dumps({"messages": [{"role": "user", "content": content}]})
    request = ask(content)
    bigs = {
        "http": lambda: asyncio.to_thread(send_big_http, mesh, body),
        "grpc": lambda: asyncio.to_thread(send_big_grpc, mesh, request),
    }
    for door, big in bigs.items():
        # A frozen loop fails every attempt; one scheduler stall of a shared 2-core machine
        # (other suites run beside this one) must not, so the best of three attempts counts.
        attempts = []
        for _ in range(3):
            rounds, worst, answer = await measure_while(big, mesh)
            # Refused for its token count, after admission counted it.
            assert answer in (400, grpc.StatusCode.INVALID_ARGUMENT), answer
            slow = {name: round(s, 3) for name, s in worst.items() if s >= SMALL_CALL_LIMIT_S}
            attempts.append((rounds, slow))
            # Counting 8 MiB takes about a second; a round takes milliseconds unless blocked.
            if rounds >= 3 and not slow:
                break
        else:
            pytest.fail(
                f"{door}: (rounds overlapped, small calls over 100 ms) per attempt: {attempts}"
            )


def test_fuzzed_requests_to_the_router_process(mesh: Mesh) -> None:
    """A smaller share of the fuzzing (tests/fuzz) through the real router process."""
    url = f"http://{mesh.address('router_http')}/v1/chat/completions"
    with httpx.Client(timeout=60, headers={"authorization": "Bearer dev"}) as client:

        @settings(FUZZ, max_examples=150)
        @given(case=http_cases().filter(lambda case: case.field != ""))
        def one(case: HttpCase) -> None:
            response = client.post(url, content=case.body)
            check_http(
                case, response.status_code, response.content, response.headers["content-type"]
            )

        one()


def test_fuzzed_grpc_requests_to_the_router_process(mesh: Mesh) -> None:
    with grpc.insecure_channel(mesh.address("router")) as channel:
        stub = router_grpc.RouterServiceStub(channel)

        @settings(FUZZ, max_examples=100)
        @given(case=grpc_cases().filter(lambda case: case.field != ""))
        def one(case: GrpcCase) -> None:
            try:
                stub.Complete(case.request, metadata=DEV_KEY, timeout=60)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (case, error)
                assert case.field in (error.details() or ""), (case.field, error.details())

        one()

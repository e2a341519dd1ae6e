"""Process lifecycle: health, reflection, graceful drain on SIGTERM, and fatal bad settings."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from sluice.router.v1 import router_service_pb2 as router_pb

from shared.grpc_client import open_channel
from shared.grpc_server import build_grpc_server
from shared.mesh import GRPC_SERVICES, Mesh, free_port, grpc_serving
from shared.telemetry import Telemetry
from tests.support import DEV_KEY, ask, patch_region, router_stub

pytestmark = pytest.mark.integration


def test_every_service_is_serving_by_name(mesh: Mesh) -> None:
    names = {
        "router": "sluice.router.v1.RouterService",
        "cache": "sluice.cache.v1.SemanticCacheService",
        "compressor": "sluice.compressor.v1.PromptCompressorService",
        "batcher": "sluice.batcher.v1.BatcherService",
        "dispatcher": "sluice.dispatcher.v1.RegionalDispatcherService",
    }
    assert set(names) == set(GRPC_SERVICES)
    for service, full_name in names.items():
        assert grpc_serving(mesh.address(service), full_name), service


def test_reflection_lists_the_service(mesh: Mesh) -> None:
    with grpc.insecure_channel(mesh.address("router")) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        services = {s.name for reply in replies for s in reply.list_services_response.service}
    assert "sluice.router.v1.RouterService" in services
    assert "grpc.health.v1.Health" in services


async def test_sigterm_drains_in_flight_calls(mesh: Mesh, tmp_path) -> None:
    """A second dispatcher gets SIGTERM mid-call: it stops serving health, finishes the call,
    then exits 0."""
    port = free_port()
    env = {
        **mesh.env,
        "SLUICE_DISPATCHER_LISTEN": f"127.0.0.1:{port}",
        # Not the mesh dispatcher's metrics port, which that one holds.
        "SLUICE_DISPATCHER_METRICS_LISTEN": "127.0.0.1:0",
        "SLUICE_SHUTDOWN_ANNOUNCE_S": "1.0",
    }
    log = (tmp_path / "dispatcher.log").open("wb")
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, before any awaiting
        [sys.executable, "-m", "services.dispatcher"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    try:
        for _ in range(100):
            if grpc_serving(f"127.0.0.1:{port}"):
                break
            await asyncio.sleep(0.1)
        patch_region(mesh, "us-east", ttft_median_ms=1500, ttft_p99_ms=1600)
        from sluice.common.v1 import common_pb2
        from sluice.dispatcher.v1 import dispatcher_service_pb2 as dpb
        from sluice.dispatcher.v1 import dispatcher_service_pb2_grpc as dgrpc

        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = dgrpc.RegionalDispatcherServiceStub(channel).Dispatch(
                dpb.DispatchRequest(
                    call=common_pb2.ModelCall(
                        model="gpt-4o",
                        messages=[
                            common_pb2.ChatMessage(
                                role=common_pb2.ROLE_USER, content=uuid.uuid4().hex
                            )
                        ],
                    )
                ),
                timeout=30,
            )
            await asyncio.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            health = health_pb2_grpc.HealthStub(channel)
            status = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
            response = await call
            assert response.completion.content
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    ("service", "variable", "value"),
    [
        ("router", "SLUICE_ROUTER_MAX_PROMPT_TOKENS", "lots"),
        ("dispatcher", "SLUICE_DISPATCHER_LISTEN", "nowhere"),
        ("batcher", "SLUICE_BATCHER_DISPATCHER_ADDR", "host:port"),
        ("compressor", "SLUICE_COMPRESSOR_TARGET_RATIO", "2"),
        ("cache", "SLUICE_CACHE_MIN_SIMILARITY", "abc"),
    ],
)
def test_bad_setting_stops_the_process_naming_the_variable(
    service: str, variable: str, value: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_policy_file_stops_the_router(tmp_path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: x\ntenants:\n  t:\n    api_key_sha256: [abc]\n")
    result = subprocess.run(
        [sys.executable, "-m", "services.router"],
        env={**os.environ, "SLUICE_ROUTER_POLICY": str(policy)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "tenants.t" in result.stderr and "Traceback" not in result.stderr


async def test_the_router_answers_after_a_drained_peer_restarts(
    mesh: Mesh, channel: grpc.aio.Channel
) -> None:
    response = await router_stub(channel).Complete(
        ask("What is the capital of France?", cache_mode=router_pb.CACHE_MODE_BYPASS),
        metadata=DEV_KEY,
        timeout=30,
    )
    assert response.content == "The capital of France is Paris."


async def _served_by(channel: grpc.aio.Channel, calls: int) -> dict[str, int]:
    """Sends reflection calls one after another; each replica lists a different service name,
    so the answer says which replica served the call."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    served: dict[str, int] = {}
    for _ in range(calls):
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        async for reply in replies:
            for service in reply.list_services_response.service:
                if service.name.startswith("replica."):
                    name = service.name.split(".")[1]
                    served[name] = served.get(name, 0) + 1
    return served


async def test_clients_stop_calling_a_replica_that_announced_not_serving() -> None:
    """shared.grpc_client's healthCheckConfig: once a replica turns NOT_SERVING (what SIGTERM
    does first), the channel sends every new call to the replicas still serving."""
    telemetry = Telemetry(TracerProvider())
    replicas = {
        name: build_grpc_server(
            "127.0.0.1:0", [f"replica.{name}.Service"], lambda _: None, telemetry
        )
        for name in ("a", "b")
    }
    for hosted in replicas.values():
        await hosted.server.start()
        await hosted.set_serving()
    target = "ipv4:" + ",".join(f"127.0.0.1:{h.port}" for h in replicas.values())
    channel = open_channel(target, telemetry)
    try:
        await asyncio.wait_for(channel.channel_ready(), 10)
        assert set(await _served_by(channel, 20)) == {"a", "b"}
        await replicas["a"].health.enter_graceful_shutdown()
        await asyncio.sleep(0.5)  # the health watch stream brings NOT_SERVING to the client
        assert await _served_by(channel, 20) == {"b": 20}
    finally:
        await channel.close()
        for hosted in replicas.values():
            await hosted.server.stop(None)

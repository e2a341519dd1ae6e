"""Singleflight across replicas: two routers and two batcher replicas as real processes. Each
router routes a call to a batcher by the call's hash, so identical concurrent requests sent to
different routers still meet in one batcher and make one upstream call."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import grpc
import pytest
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as router_pb

from shared.mesh import Mesh, free_ports, more_free_ports
from tests.support import DEV_KEY, ask, patch_region, router_stub, simulator_stats, stage_lines

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def meshes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, Mesh]]:
    """Mesh a: simulator, dispatcher, batcher and router; mesh b: a second batcher and router
    wired to a's dispatcher. Cache and compressor are left out; the router skips them."""
    root = tmp_path_factory.mktemp("two-replicas")
    ports_a = free_ports()
    # b's replicas serve their metrics apart from a's. Ports a was given and has not bound yet
    # are never handed to b (once, b's router found its HTTP port taken).
    own = ("batcher", "router", "router_http", "batcher_metrics", "router_metrics")
    ports_b = {**ports_a, **more_free_ports(own, set(ports_a.values()))}
    batchers = f"127.0.0.1:{ports_a['batcher']},127.0.0.1:{ports_b['batcher']}"
    common = {"SLUICE_ROUTER_BATCHER_ADDR": batchers, "SLUICE_SHUTDOWN_ANNOUNCE_S": "0.1"}
    a = Mesh.plan(ports_a, root / "a", {**common, "SLUICE_BATCHER_DATA_DIR": str(root / "a")})
    b = Mesh.plan(ports_b, root / "b", {**common, "SLUICE_BATCHER_DATA_DIR": str(root / "b")})
    try:
        for name in ("simulator", "dispatcher", "batcher"):
            a.start(name)
        b.start("batcher")
        a.wait_ready(("simulator", "dispatcher", "batcher"))
        b.wait_ready(("batcher",))
        a.start("router")
        b.start("router")
        a.wait_ready(("router",))
        b.wait_ready(("router",))
        yield a, b
    finally:
        b.stop_all()
        a.stop_all()


async def test_identical_requests_through_two_routers_make_one_upstream_call(
    meshes: tuple[Mesh, Mesh],
) -> None:
    a, b = meshes
    # A slow upstream keeps every request in flight together; the cache is bypassed (and not
    # running), so only the batcher can deduplicate.
    patch_region(a, "us-east", ttft_median_ms=800, ttft_p99_ms=900)
    async with (
        grpc.aio.insecure_channel(a.address("router")) as channel_a,
        grpc.aio.insecure_channel(b.address("router")) as channel_b,
    ):
        for round_number in range(3):
            request = ask(
                f"Compare QUIC and TCP ({uuid.uuid4().hex[:8]})",
                cache_mode=router_pb.CACHE_MODE_BYPASS,
            )
            before = simulator_stats(a)["regions"]["us-east"]["received"]
            responses = await asyncio.gather(
                *(
                    router_stub(channel).Complete(request, metadata=DEV_KEY, timeout=30)
                    for channel in (channel_a, channel_b) * 3
                )
            )
            upstream = simulator_stats(a)["regions"]["us-east"]["received"] - before
            assert upstream == 1, f"round {round_number}: {upstream} upstream calls"
            assert len({r.content for r in responses}) == 1
            shared = [
                r
                for r in responses
                if stage_lines(r)["batcher"].outcome == common_pb2.STAGE_OUTCOME_USED
            ]
            assert len(shared) == 5

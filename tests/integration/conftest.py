"""One real mesh (all five services and the simulator as processes) shared by these tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
import pytest_asyncio

from shared.mesh import Mesh
from shared.otlp_receiver import OtlpReceiver
from tests.support import reset_simulator, running_mesh


@pytest.fixture(scope="session")
def mesh_and_traces(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Mesh, OtlpReceiver]]:
    with running_mesh(tmp_path_factory.mktemp("mesh-logs")) as running:
        yield running


@pytest.fixture
def mesh(mesh_and_traces: tuple[Mesh, OtlpReceiver]) -> Iterator[Mesh]:
    running, _ = mesh_and_traces
    reset_simulator(running)
    yield running
    reset_simulator(running)


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def channel(mesh_and_traces: tuple[Mesh, OtlpReceiver]) -> AsyncIterator[grpc.aio.Channel]:
    running, _ = mesh_and_traces
    async with grpc.aio.insecure_channel(running.address("router")) as opened:
        yield opened

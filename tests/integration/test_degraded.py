"""A dead cache, compressor or batcher is skipped and recorded; a dead dispatcher is UNAVAILABLE.

This module runs its own mesh, since it kills processes.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator

import grpc
import pytest
from sluice.common.v1 import common_pb2

from shared.mesh import Mesh
from tests.support import DEV_KEY, ask, router_stub, running_mesh, stage_lines, with_context

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def doomed_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with running_mesh(tmp_path_factory.mktemp("doomed-mesh")) as (mesh, _):
        yield mesh


async def complete(mesh: Mesh, text: str):
    async with grpc.aio.insecure_channel(mesh.address("router")) as channel:
        return await router_stub(channel).Complete(ask(text), metadata=DEV_KEY, timeout=30)


async def test_degrades_stage_by_stage(doomed_mesh: Mesh) -> None:
    # Long enough that the router sends it to the compressor.
    question = with_context(f"What is a write-ahead log? ({uuid.uuid4().hex[:6]})")
    healthy = await complete(doomed_mesh, question)
    assert stage_lines(healthy)["cache"].outcome == common_pb2.STAGE_OUTCOME_PASSED

    assert doomed_mesh.stop("cache", signal.SIGKILL) == -signal.SIGKILL
    no_cache = await complete(doomed_mesh, question)
    lines = stage_lines(no_cache)
    assert no_cache.content and not no_cache.cache_hit
    assert lines["cache"].outcome == common_pb2.STAGE_OUTCOME_SKIPPED
    assert "UNAVAILABLE" in lines["cache"].detail

    doomed_mesh.stop("compressor", signal.SIGKILL)
    doomed_mesh.stop("batcher", signal.SIGKILL)
    bare = await complete(doomed_mesh, question)
    lines = stage_lines(bare)
    assert bare.content and bare.tier == 1
    assert lines["compressor"].outcome == common_pb2.STAGE_OUTCOME_SKIPPED
    assert lines["batcher"].outcome == common_pb2.STAGE_OUTCOME_SKIPPED
    assert "called the dispatcher directly" in lines["batcher"].detail

    doomed_mesh.stop("dispatcher", signal.SIGKILL)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await complete(doomed_mesh, question)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    # The caller gets a stable message with the trace id; the peer's address stays in the log.
    details = caught.value.details() or ""
    assert details.startswith("upstream unavailable") and "trace_id" in details
    assert doomed_mesh.address("dispatcher") not in details

"""The whole mesh with a real LLM as tier 1: router, cache, compressor, batcher and dispatcher
as processes, the dispatcher's endpoints file pointing the tier-1 model at llama.cpp serving
Gemma 3 270M (self-hosted, so priced at zero), the other tiers at the simulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as router_pb

from shared.mesh import Mesh
from tests.e2e_llm.conftest import LlamaServer
from tests.support import DEV_KEY, router_stub, running_mesh, stage_lines

pytestmark = pytest.mark.llm

TIER_ONE = "Qwen/Qwen3-8B"


def endpoints_file(directory: Path, llama: LlamaServer) -> Path:
    # llama.cpp accepts any model name, so it can stand in for the tier-1 model; one request at
    # a time is all it serves, hence max_concurrency 1.
    text = f"""
endpoints:
  - name: llama-local
    provider: llama.cpp
    region: local
    base_url: {llama.base_url}
    models: [{TIER_ONE}]
    prices: {{{TIER_ONE}: {{input: 0, output: 0}}}}
    max_concurrency: 1
  - name: sim-us-east
    provider: simulator
    region: us-east
    base_url: ${{SLUICE_SIMULATOR_URL}}/us-east/v1
    models: [deepseek-v4-flash, deepseek-reasoner, gpt-4o]
"""
    path = directory / "endpoints.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def llm_mesh(llama_server: LlamaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    directory = tmp_path_factory.mktemp("llm-mesh")
    env = {"SLUICE_DISPATCHER_ENDPOINTS": str(endpoints_file(directory, llama_server))}
    with running_mesh(directory / "logs", env) as (mesh, _):
        yield mesh


def request(text: str) -> router_pb.CompleteRequest:
    return router_pb.CompleteRequest(
        messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)],
        sampling=common_pb2.SamplingParams(max_tokens=24, temperature=0.0),
        cache_mode=router_pb.CACHE_MODE_BYPASS,
    )


async def test_complete_through_the_mesh_reaches_the_real_llm(llm_mesh: Mesh) -> None:
    async with grpc.aio.insecure_channel(llm_mesh.address("router")) as channel:
        response = await router_stub(channel).Complete(
            request(f"Name a colour of the sky. ({uuid.uuid4().hex[:6]})"),
            metadata=DEV_KEY,
            timeout=180,
        )
    tier_one = stage_lines(response)["tier 1"]
    # Answered by llama.cpp (region "local"), whatever the gates then made of a base model.
    assert tier_one.region == "local" and tier_one.model == TIER_ONE
    assert tier_one.usage.input_tokens > 0 and tier_one.usage.output_tokens > 0
    assert tier_one.cost_nano_usd == 0, "self-hosted: the endpoint's price override is zero"
    assert response.content


async def test_complete_stream_through_the_mesh_counts_the_missing_usage(llm_mesh: Mesh) -> None:
    async with grpc.aio.insecure_channel(llm_mesh.address("router")) as channel:
        stream = router_stub(channel).CompleteStream(
            router_pb.CompleteStreamRequest(
                messages=[
                    common_pb2.ChatMessage(
                        role=common_pb2.ROLE_USER,
                        content=f"Say hello to a friend. ({uuid.uuid4().hex[:6]})",
                    )
                ],
                sampling=common_pb2.SamplingParams(max_tokens=24, temperature=0.0),
            ),
            metadata=DEV_KEY,
            timeout=180,
        )
        events = [event async for event in stream]
    summary = events[-1].summary
    first_attempt = "".join(e.delta.text for e in events[:-1] if e.delta.attempt == 1)
    assert first_attempt, "tier 1's tokens streamed straight through from llama.cpp"
    tier_one = stage_lines(summary)["tier 1"]
    assert tier_one.region == "local"
    # llama.cpp sends no usage in a stream: the dispatcher counted the tokens itself.
    assert tier_one.usage.output_tokens > 0 and tier_one.usage.input_tokens > 0

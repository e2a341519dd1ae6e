"""The learned gates through the real processes: the scorer, the provider's token logprobs, the
cheap-LLM judge and the packable flag, each escalating (or not) on a real mesh."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as router_pb

from shared.mesh import Mesh
from tests.support import ask, router_stub, running_mesh

pytestmark = pytest.mark.integration

KEY = (("x-api-key", "gates-key"),)
CHEAP, MID, TOP = "Qwen/Qwen3-8B", "deepseek-v4-flash", "gpt-4o"
POLICY = {
    "version": "cascade-gates-1",
    "tenants": {
        "gates": {
            "api_key_sha256": ["0c6385ec2c89416b61d103b4d396842a48b9a26616770ff186fc840b7d4be4e9"],
            "baseline_model": TOP,
            "model_classes": {
                # No probability reaches 1.0: tier 1 always fails its scorer gate; 0.0 passes.
                "scored": {
                    "tiers": [
                        {"model": CHEAP, "gates": ["finish_reason", "scorer"], "min_score": 1.0},
                        {"model": MID, "gates": ["finish_reason", "scorer"], "min_score": 0.0},
                        {"model": TOP, "gates": ["finish_reason"]},
                    ]
                },
                "logprob": {
                    "tiers": [
                        {
                            "model": CHEAP,
                            "gates": ["finish_reason", "logprob"],
                            "min_mean_logprob": -0.5,
                        },
                        {"model": MID, "gates": ["finish_reason"]},
                    ]
                },
                "judged": {
                    "judge_model": CHEAP,
                    "tiers": [
                        {"model": CHEAP, "gates": ["finish_reason", "judge"]},
                        {"model": MID, "gates": ["finish_reason"]},
                    ],
                },
                # Tier 1 never says exactly "Paris.", so the predictor learns to skip it.
                "learned-start": {
                    "learned_start": True,
                    "gate_settings": {"expected_format": "Paris\\."},
                    "tiers": [
                        {"model": CHEAP, "gates": ["format"]},
                        {"model": MID, "gates": ["finish_reason"]},
                    ],
                },
                "packable": {"packable": True, "tiers": [{"model": CHEAP}]},
                "unpacked": {"tiers": [{"model": CHEAP}]},
            },
        }
    },
}


@pytest.fixture(scope="module")
def gates_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("cascade-gates")
    policy = Path(root / "policy.yaml")
    policy.write_text(yaml.safe_dump(POLICY))
    env = {
        "SLUICE_ROUTER_POLICY": str(policy),
        # A wide flush window, so concurrent calls meet in the batcher on a busy machine.
        "SLUICE_BATCHER_PACK_WINDOW_MS": "400",
        "SLUICE_COMPRESSOR_MIN_TOKENS": "1000000",
    }
    with running_mesh(root / "logs", env) as (mesh, _):
        yield mesh


async def complete(mesh: Mesh, text: str, model_class: str) -> router_pb.CompleteResponse:
    async with grpc.aio.insecure_channel(mesh.address("router")) as channel:
        request = ask(f"{text} ({uuid.uuid4().hex[:8]})", model_class=model_class)
        return await router_stub(channel).Complete(request, metadata=KEY, timeout=60)


def lines_of(response: router_pb.CompleteResponse, stage: int) -> list[common_pb2.StageCost]:
    return [line for line in response.cost.stages if line.stage == stage]


async def test_a_tier_escalates_on_the_scorer_gate(gates_mesh: Mesh) -> None:
    response = await complete(gates_mesh, "Which planet is closest to the Sun?", "scored")
    first, second = lines_of(response, common_pb2.STAGE_TIER)
    assert (first.model, first.outcome) == (CHEAP, common_pb2.STAGE_OUTCOME_REJECTED)
    assert "gate scorer: scorer 0." in first.detail and "< min_score 1.000" in first.detail
    assert first.cost_nano_usd > 0
    assert (second.model, second.outcome) == (MID, common_pb2.STAGE_OUTCOME_USED)
    assert ">= min_score 0.000" in second.detail
    assert response.model == MID and response.tier == 2
    assert response.cost.total_cost_nano_usd == sum(s.cost_nano_usd for s in response.cost.stages)


async def test_a_tier_escalates_on_low_token_logprobs(gates_mesh: Mesh) -> None:
    unsure = await complete(gates_mesh, "Which option is right? [sim:unsure]", "logprob")
    first, second = lines_of(unsure, common_pb2.STAGE_TIER)
    assert first.outcome == common_pb2.STAGE_OUTCOME_REJECTED
    assert first.detail.startswith("gate logprob: mean token logprob -")
    assert second.outcome == common_pb2.STAGE_OUTCOME_USED and unsure.model == MID
    sure = await complete(gates_mesh, "Explain DNS", "logprob")
    (only,) = lines_of(sure, common_pb2.STAGE_TIER)
    assert only.outcome == common_pb2.STAGE_OUTCOME_USED and "mean token logprob -0." in only.detail


async def test_the_judge_escalates_on_no_and_its_call_is_billed(gates_mesh: Mesh) -> None:
    rejected = await complete(gates_mesh, "Pick one [sim:judge-no]", "judged")
    kinds = [(s.stage, s.outcome) for s in rejected.cost.stages if s.tier]
    assert kinds == [
        (common_pb2.STAGE_TIER, common_pb2.STAGE_OUTCOME_REJECTED),
        (common_pb2.STAGE_JUDGE, common_pb2.STAGE_OUTCOME_REJECTED),
        (common_pb2.STAGE_TIER, common_pb2.STAGE_OUTCOME_USED),
    ]
    (judge,) = lines_of(rejected, common_pb2.STAGE_JUDGE)
    assert judge.cost_nano_usd > 0 and judge.model == CHEAP
    assert rejected.cost.total_cost_nano_usd == sum(s.cost_nano_usd for s in rejected.cost.stages)
    accepted = await complete(gates_mesh, "Pick one", "judged")
    assert accepted.tier == 1
    assert lines_of(accepted, common_pb2.STAGE_JUDGE)[0].outcome == common_pb2.STAGE_OUTCOME_PASSED


SYSTEM = "You label support tickets. " + " ".join(
    f"Label {i}: tickets about topic number {i} of the catalogue." for i in range(60)
)


async def labels(mesh: Mesh, model_class: str) -> list[router_pb.CompleteResponse]:
    async with grpc.aio.insecure_channel(mesh.address("router")) as channel:
        stub = router_stub(channel)
        requests = [
            ask(
                f"Ticket {i}: my invoice is wrong ({uuid.uuid4().hex[:6]})",
                system=SYSTEM,
                model_class=model_class,
                cache_mode=router_pb.CACHE_MODE_BYPASS,
            )
            for i in range(3)
        ]
        return list(
            await asyncio.gather(*(stub.Complete(r, metadata=KEY, timeout=60) for r in requests))
        )


async def test_a_packable_class_reaches_the_batcher_as_packable(gates_mesh: Mesh) -> None:
    packed = await labels(gates_mesh, "packable")
    details = [lines_of(r, common_pb2.STAGE_BATCHER)[0].detail for r in packed]
    assert any(d.startswith("packed with ") for d in details), details
    plain = await labels(gates_mesh, "unpacked")
    details = [lines_of(r, common_pb2.STAGE_BATCHER)[0].detail for r in plain]
    assert not any("packed" in d for d in details), details


async def test_the_start_tier_learns_online_to_skip_a_failing_tier(gates_mesh: Mesh) -> None:
    firsts = []
    async with grpc.aio.insecure_channel(gates_mesh.address("router")) as channel:
        stub = router_stub(channel)
        request = ask(
            "Name a large river in Europe.",
            model_class="learned-start",
            cache_mode=router_pb.CACHE_MODE_BYPASS,
        )
        for _ in range(8):
            response = await stub.Complete(request, metadata=KEY, timeout=60)
            firsts.append(lines_of(response, common_pb2.STAGE_TIER)[0])
    assert (
        firsts[0].outcome == common_pb2.STAGE_OUTCOME_REJECTED and "gate format" in firsts[0].detail
    )
    skipped = [line for line in firsts if line.outcome == common_pb2.STAGE_OUTCOME_SKIPPED]
    assert skipped, [line.detail for line in firsts]
    assert skipped[0].detail.startswith("start-tier predictor chose tier 2")
    assert skipped[0].cost_nano_usd == 0
    # Once it skips, it keeps skipping (bar the 5% exploration floor).
    assert sum(line.outcome == common_pb2.STAGE_OUTCOME_SKIPPED for line in firsts[-3:]) >= 2

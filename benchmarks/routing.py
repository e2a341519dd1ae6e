"""Routing benchmark: RouterBench test splits, offline and through the running mesh.

    .venv/bin/python -m benchmarks.routing --data ../shared/data/routerbench-subset

Two kinds of rows, always labelled:
- OFFLINE: pure-Python replay of each policy over the recorded answers and costs (no mesh).
  It covers the baselines, upper bounds, the rule-gate cascades and Sluice's learned cascade
  (FrugalGPT-style scorer, thresholds fitted on *_train), the threshold curve and its APGR
  (RouteLLM's metric).
- MESH: every test prompt sent through RouterService.Complete on the full mesh (router, cache
  bypassed, compressor, batcher, dispatcher) with the simulator replaying the recordings. The
  mesh answers; this script only looks up whether the accepted model's recorded answer was
  right. The learned cascade runs in the router: its `scorer` gate (policy
  services/router/policies/routerbench.yaml has the same tiers and min_score), and, in the
  `learned-start` class, the online start-tier predictor.

Prompts where some model has no recorded result (8 ARC test prompts) are left out everywhere,
so every policy faces the same 945 prompts. *_test labels are read only to score answers.
The last line printed is one JSON object; `accuracy_vs_gpt4` and `cost_ratio_vs_gpt4` are
Sluice's learned cascade overall (and per split under `splits`), measured in the mesh when the
router runs it and offline otherwise (`source` says which).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as router_pb
from sluice.router.v1 import router_service_pb2_grpc as router_grpc

from services.router.gates import GATE_NAMES, GateInput, GateSettings, evaluate
from services.router.learning.cascade_design import CascadeDesign
from services.router.learning.data import load_split
from services.router.learning.embedding import MemoEmbedder, MiniLm
from services.router.learning.evaluate import OVERALL, BySplit, OfflineEvaluator
from services.router.learning.report import SLUICE, Row, format_report, summary
from services.router.learning.scorer import MODELS_DIR, ScorerModel
from services.router.learning.simulate import Case, Outcome, complete, prepare, summarise
from services.router.learning.start_tier import TierPrior
from services.router.learning.train import DEFAULT_CACHE
from shared.chat import Finish
from shared.mesh import Mesh, free_ports

API_KEY = "routing-bench"
# The heuristic cascade: simple gates only. Each task gets its expected-format regex,
# which is how a tenant would configure a format gate for a known task.
RULE_GATES = ("finish_reason", "truncation", "refusal", "min_length", "format")
LAST_GATES = ("finish_reason", "refusal")
EXPECTED_FORMAT = {
    "arc": r"\(?[A-E]\)?\.?",
    "winogrande": r"\(?[AB]\)?\.?",
    "mbpp": r".*(```|\[PYTHON\]).*",
}
# Replayed answers must come back whole: a cut answer would be a different answer.
MAX_TOKENS = 4096


def rule_settings(task: str) -> GateSettings:
    return GateSettings(min_length_chars=1, expected_format=EXPECTED_FORMAT[task])


def rule_gate(case: Case, _: int, model: str, __: tuple[str, ...]) -> bool:
    """The router's own gate code, on the recorded answer (the simulator reports `stop`)."""
    answer = GateInput(case.item.answers[model].text, Finish.STOP)
    return evaluate(RULE_GATES, answer, rule_settings(case.item.task)).passed


# ----------------------------------------------------------------------------- the mesh


@dataclass(frozen=True)
class MeshClass:
    """One model class of the generated policy and the splits whose prompts it serves."""

    name: str
    tiers: tuple[str, ...]
    task: str  # "" = serves every split


LEARNED_CLASSES = ("learned", "learned-start")
START_ROW = "same, with the online start tier"


def mesh_classes(design: CascadeDesign, learned: bool) -> list[MeshClass]:
    tasks = tuple(EXPECTED_FORMAT)
    classes = [MeshClass("always-strong", (design.strong,), "")]
    classes += [MeshClass(f"heuristic-{t}", design.tiers, t) for t in tasks]
    if learned:
        classes += [MeshClass(name, design.tiers, "") for name in LEARNED_CLASSES]
    return classes


def policy_document(design: CascadeDesign, classes: Sequence[MeshClass]) -> dict[str, Any]:
    model_classes: dict[str, Any] = {}
    for spec in classes:
        tiers: list[dict[str, Any]] = []
        for position, model in enumerate(spec.tiers):
            last = position == len(spec.tiers) - 1
            if spec.name in LEARNED_CLASSES:
                gates = list(LAST_GATES) if last else [*LAST_GATES, "scorer"]
                tier: dict[str, Any] = {"model": model, "gates": gates}
                if not last:
                    tier["min_score"] = design.thresholds()[position]
            else:
                tier = {"model": model, "gates": list(LAST_GATES if last else RULE_GATES)}
            tiers.append(tier)
        settings: dict[str, Any] = {"min_length_chars": 1}
        if spec.task:
            settings["expected_format"] = EXPECTED_FORMAT[spec.task]
        model_classes[spec.name] = {
            "max_tokens": MAX_TOKENS,
            "tiers": tiers,
            "gate_settings": settings,
            "learned_start": spec.name == "learned-start",
        }
    return {
        "version": "routing-bench-"
        + hashlib.sha1(json.dumps(model_classes).encode()).hexdigest()[:8],
        "tenants": {
            "bench": {
                "api_key_sha256": [hashlib.sha256(API_KEY.encode()).hexdigest()],
                "baseline_model": design.strong,
                "default_model_class": classes[0].name,
                "model_classes": model_classes,
            }
        },
    }


def endpoints_document(models: Sequence[str]) -> dict[str, Any]:
    return {
        "endpoints": [
            {
                "name": f"sim-{region}",
                "provider": "simulator",
                "region": region,
                "base_url": "${SLUICE_SIMULATOR_URL}/" + region + "/v1",
                "models": sorted(models),
            }
            for region in ("us-east", "eu-west", "ap-south")
        ]
    }


@dataclass(frozen=True)
class MeshAnswer:
    model: str
    content: str
    cost_usd: float


async def ask_all(
    address: str,
    model_class: str,
    prompts: Sequence[str],
    concurrency: int,
    api_key: str = API_KEY,
) -> list[MeshAnswer]:
    gate = asyncio.Semaphore(concurrency)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = router_grpc.RouterServiceStub(channel)

        async def one(prompt: str) -> MeshAnswer:
            request = router_pb.CompleteRequest(
                model_class=model_class,
                messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=prompt)],
                cache_mode=router_pb.CACHE_MODE_BYPASS,
            )
            async with gate:
                reply = await stub.Complete(
                    request, metadata=(("x-api-key", api_key),), timeout=120
                )
            return MeshAnswer(reply.model, reply.content, reply.cost.total_cost_nano_usd / 1e9)

        return list(await asyncio.gather(*(one(p) for p in prompts)))


def score_mesh(
    cases: Sequence[Case], answers: Sequence[MeshAnswer], strong: str
) -> tuple[list[Outcome], int]:
    """Outcomes judged by the accepted model's recorded label; counts replay mismatches."""
    outcomes, mismatches = [], 0
    for case, answer in zip(cases, answers, strict=True):
        recorded = case.item.answers.get(answer.model)
        if recorded is None or " ".join(recorded.text.split()) != " ".join(answer.content.split()):
            mismatches += 1
        correct = bool(recorded and recorded.correct)
        outcomes.append(Outcome(correct, answer.cost_usd, answer.model, answer.model == strong))
    return outcomes, mismatches


def run_mesh(
    data: Path, design: CascadeDesign, splits: Mapping[str, Sequence[Case]], concurrency: int
) -> dict[str, Any]:
    learned = "scorer" in GATE_NAMES
    classes = mesh_classes(design, learned)
    everyone = [c for cases in splits.values() for c in cases]
    results: dict[str, Any] = {"learned_wired": learned, "rows": {}, "mismatches": {}}
    with tempfile.TemporaryDirectory(prefix="sluice-routing-") as tmp:
        root = Path(tmp)
        (root / "policy.yaml").write_text(yaml.safe_dump(policy_document(design, classes)))
        (root / "endpoints.yaml").write_text(
            yaml.safe_dump(endpoints_document(sorted(design.model_stats)))
        )
        env = {
            "SLUICE_SIMULATOR_REPLAY_DIR": str(data.resolve()),
            "SLUICE_ROUTER_POLICY": str(root / "policy.yaml"),
            "SLUICE_DISPATCHER_ENDPOINTS": str(root / "endpoints.yaml"),
            "SLUICE_SIMULATOR_LATENCY_SCALE": "0",
            # The replay matches prompts exactly; compression is not what this measures.
            "SLUICE_COMPRESSOR_MIN_TOKENS": "1000000",
            "SLUICE_SHUTDOWN_ANNOUNCE_S": "0.3",
        }
        mesh = Mesh.plan(free_ports(), root / "logs", env)
        try:
            mesh.start_all()
            mesh.wait_ready(timeout_s=600)
            address = mesh.address("router")
            for spec in classes:
                chosen = [c for c in everyone if not spec.task or c.item.task == spec.task]
                prompts = [c.item.prompt for c in chosen]
                answers = asyncio.run(ask_all(address, spec.name, prompts, concurrency))
                outcomes, mismatches = score_mesh(chosen, answers, design.strong)
                results["rows"][spec.name] = (chosen, outcomes)
                results["mismatches"][spec.name] = mismatches
        finally:
            mesh.stop_all()
    return results


def mesh_by_split(
    splits: Mapping[str, Sequence[Case]],
    rows: Mapping[str, tuple[list[Case], list[Outcome]]],
    names: Sequence[str],
) -> BySplit:
    """Joins per-class outcomes (e.g. heuristic-arc, heuristic-mbpp, ...) into one row."""
    by_case: dict[int, Outcome] = {}
    for name in names:
        cases, outcomes = rows[name]
        by_case.update({id(c): o for c, o in zip(cases, outcomes, strict=True)})
    result = {split: summarise([by_case[id(c)] for c in cases]) for split, cases in splits.items()}
    result[OVERALL] = summarise([by_case[id(c)] for cases in splits.values() for c in cases])
    return result


def mesh_rows_of(
    design: CascadeDesign, splits: Mapping[str, Sequence[Case]], mesh: Mapping[str, Any]
) -> list[Row]:
    rows = mesh["rows"]
    heuristic = [f"heuristic-{t}" for t in EXPECTED_FORMAT]
    out: list[Row] = [
        ("MESH", f"always {design.strong}", mesh_by_split(splits, rows, ["always-strong"])),
        (
            "MESH",
            "heuristic cascade, rule gates (Sluice's tiers)",
            mesh_by_split(splits, rows, heuristic),
        ),
    ]
    if mesh["learned_wired"]:
        out.append(("MESH", SLUICE, mesh_by_split(splits, rows, ["learned"])))
        out.append(("MESH", START_ROW, mesh_by_split(splits, rows, ["learned-start"])))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="RouterBench replay, offline and through the mesh")
    parser.add_argument("--data", type=Path, required=True, help="routerbench-subset directory")
    parser.add_argument("--models", type=Path, default=MODELS_DIR)
    parser.add_argument("--embedding-cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--limit", type=int, default=0, help="prompts per split (0 = all)")
    parser.add_argument("--skip-mesh", action="store_true", help="offline rows only")
    args = parser.parse_args(argv)
    design = CascadeDesign.load(args.models / "cascade.json")
    scorer = ScorerModel.load(args.models / "answer_scorer.json")
    prior = TierPrior.load(args.models / "start_tier.json")
    embedder = MemoEmbedder(MiniLm(threads=2), args.embedding_cache)
    splits: dict[str, list[Case]] = {}
    for task, items in load_split(args.data, "test").items():
        ordered = sorted(items, key=lambda i: hashlib.sha1(i.sample_id.encode()).hexdigest())
        chosen = ordered[: args.limit or None]
        splits[task] = complete(prepare(chosen, embedder), list(design.model_stats))
        print(f"{task}: {len(splits[task])} of {len(chosen)} prompts have every model's answer")
    embedder.save()
    report = OfflineEvaluator(splits, design, scorer, rule_gate, prior).report()
    mesh = None if args.skip_mesh else run_mesh(args.data, design, splits, args.concurrency)
    mesh_rows = [] if mesh is None else mesh_rows_of(design, splits, mesh)
    print(format_report(report, mesh_rows, list(splits)))
    info = None if mesh is None else {k: mesh[k] for k in ("learned_wired", "mismatches")}
    if info is not None and not info["learned_wired"]:
        print("\nMESH: the router has no `scorer` gate yet; only rule-gate cascades ran there.")
    print(json.dumps(summary(report, mesh_rows, info)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

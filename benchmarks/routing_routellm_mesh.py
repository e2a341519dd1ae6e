"""The RouteLLM replay through the running mesh: held-back prompts sent to RouterService.Complete.

The simulator replays the RouteLLM folder (services/simulator/replay_routellm.py), the router
runs the generated routellm policy, and each answer's model says whether the cascade escalated.
The offline replay at the same threshold predicts the same choice for every prompt; the share
of prompts where the two agree is the check.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.common import hash_order
from benchmarks.routellm_curves import GSM8K_SETTINGS, STRONG, WEAK, Case, Floats
from benchmarks.routing import ask_all, endpoints_document
from benchmarks.routing_routellm import API_KEY, answer_scores
from services.router.answer_gates import AnswerSettings
from shared.mesh import Mesh, free_ports

_METRICS = ("router", "cache", "compressor", "batcher", "dispatcher")
_SETTINGS = {"gsm8k": GSM8K_SETTINGS, "mtbench": AnswerSettings()}


def compare(
    cases: Sequence[Case], answers: Sequence[tuple[str, str]], score: Floats, threshold: float
) -> dict[str, Any]:
    """The mesh's choices against the offline replay's at the same threshold."""
    mesh_up = np.array([model == STRONG for model, _ in answers])
    offline_up = score < threshold
    weak_served = [
        (c, text) for c, (model, text) in zip(cases, answers, strict=True) if model == WEAK
    ]
    mismatches = sum(" ".join(c.weak_answer.split()) != " ".join(t.split()) for c, t in weak_served)

    def quality(up: np.ndarray[Any, Any]) -> float:
        return float(
            np.mean(
                [c.strong_quality if u else c.weak_quality for c, u in zip(cases, up, strict=True)]
            )
        )

    return {
        "n": len(cases),
        "strong_share": float(mesh_up.mean()),
        "quality": quality(mesh_up),
        "offline_share": float(offline_up.mean()),
        "offline_quality": quality(offline_up),
        "agreement": float((mesh_up == offline_up).mean()),
        "mismatches": mismatches,
    }


def run_mesh(
    data: Path,
    document: Mapping[str, Any],
    held_of: Mapping[str, Sequence[Case]],
    fitted: Mapping[str, tuple[Floats, float]],
    limit: int,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sluice-routellm-") as tmp:
        root = Path(tmp)
        (root / "policy.yaml").write_text(yaml.safe_dump(dict(document)))
        (root / "endpoints.yaml").write_text(yaml.safe_dump(endpoints_document([WEAK, STRONG])))
        env = {
            "SLUICE_SIMULATOR_REPLAY_DIR": str(data.resolve()),
            "SLUICE_ROUTER_POLICY": str(root / "policy.yaml"),
            "SLUICE_DISPATCHER_ENDPOINTS": str(root / "endpoints.yaml"),
            "SLUICE_SIMULATOR_LATENCY_SCALE": "0",
            "SLUICE_COMPRESSOR_MIN_TOKENS": "1000000",
            "SLUICE_SHUTDOWN_ANNOUNCE_S": "0.3",
        }
        # Metrics endpoints off: their fixed default ports may be held by another mesh.
        env |= {f"SLUICE_{name.upper()}_METRICS_LISTEN": "" for name in _METRICS}
        mesh = Mesh.plan(free_ports(), root / "logs", env)
        try:
            mesh.start_all()
            mesh.wait_ready(timeout_s=600)
            for bench in ("gsm8k", "mtbench"):
                cases = sorted(held_of[bench], key=lambda c: hash_order(c.prompt))
                cases = cases[: limit or None] if bench == "gsm8k" else cases
                weights, threshold = fitted[bench]
                score = answer_scores(cases, weights, _SETTINGS[bench])
                prompts = [c.prompt for c in cases]
                replies = asyncio.run(
                    ask_all(mesh.address("router"), bench, prompts, 8, api_key=API_KEY)
                )
                answers = [(reply.model, reply.content) for reply in replies]
                results[bench] = compare(cases, answers, score, threshold)
        finally:
            mesh.stop_all()
    return results

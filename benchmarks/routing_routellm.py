"""Beat RouteLLM on its own evaluation data: answer-reading gates, offline and through the mesh.

    .venv/bin/python -m benchmarks.routing_routellm --data ../shared/data/routellm-evals

The cascade asks Mixtral-8x7B first and escalates to GPT-4-1106 when its answer fails the gates;
RouteLLM's routers decide from the prompt alone. Everything learned (the `answer_score` weights,
the per-subject MMLU prior, the mesh's threshold) is fitted on the hash-split fit half
(benchmarks/common.is_fit); every figure is on the held-back half, contaminated prompts left
out. OFFLINE rows replay the recorded answers in Python with the router's own gate code; MESH
rows send held-back prompts through RouterService.Complete on the running mesh (simulator
replaying the RouteLLM folder, router under the generated routellm policy) and count how often
the mesh's choice of model agrees with the offline replay at the same threshold.
MT-Bench is also reported per turn, with bootstrap spreads and cross-fitted on all 72
questions, labelled as such (benchmarks/routellm_mtbench.py).
The last line is one JSON object (`gsm8k_apgr`, `gsm8k_cpt50`, `gsm8k_cpt80`, `mtbench_apgr`,
`mmlu_apgr`, `mtbench_apgr_per_turn`, `mtbench_oracle_apgr_per_turn`, `mtbench_apgr_ci90`, ...).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks import routellm_mtbench
from benchmarks.routellm_curves import (
    GSM8K_SETTINGS,
    STRONG,
    WEAK,
    Case,
    Floats,
    Pricer,
    apgr,
    cost_to_reach,
    curve,
    fit_logistic,
    full_curve,
    gsm8k_cases,
    mmlu_cases,
    mt_bench_cases,
    share_to_reach,
    signal_matrix,
    weights_mapping,
)
from services.router.answer_gates import AnswerSettings
from services.router.gates import GateInput, GateSettings, evaluate
from shared.chat import Finish
from shared.pricing import load_catalogue
from shared.tokens import TokenCounter

API_KEY = "routellm"
POLICY_FILE = Path(__file__).resolve().parent.parent / "services/router/policies/routellm.yaml"
# RouteLLM's best published routers (issue 20): APGR, strong-call share for 50% / 80% of the gap.
ANCHORS = {
    "gsm8k": ("causal LLM classifier", 0.624, 0.336, 0.631),
    "mtbench": ("matrix factorisation", 0.802, 0.134, 0.313),
    "mmlu": ("best router", 0.603, 0.354, 0.703),
}
RULE_GATES = ("final_answer", "arithmetic")
# The mesh's operating point: the fit half's threshold that recovers this share of the gap.
MESH_GAP = 0.8


def answer_scores(cases: Sequence[Case], weights: Floats, settings: AnswerSettings) -> Floats:
    x = signal_matrix(cases, settings)
    logits = weights[0] + x @ weights[1:]
    return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float64)


def fit_weights(cases: Sequence[Case], settings: AnswerSettings) -> Floats:
    """Fit half only; the label is 'escalating would not have helped'."""
    fit = [c for c in cases if c.fit]
    labels = np.array([float(c.weak_quality >= c.strong_quality) for c in fit])
    # Rounded as the policy states them, so the mesh and this replay score alike.
    return np.round(fit_logistic(signal_matrix(fit, settings), labels), 4)


def threshold_for(cases: Sequence[Case], score: Floats, gap: float) -> float:
    """The score below which the fit half escalates to recover `gap` of its quality gap."""
    points = full_curve(cases, score)
    weak, strong = points.quality[0], points.quality[-1]
    share = share_to_reach(points, weak + gap * (strong - weak))
    k = round(share * len(cases))
    ordered = np.sort(score)
    return round(float(ordered[min(k, len(cases) - 1)]), 4) if k else 0.0


def summarise(name: str, held: Sequence[Case], score: Floats, cascade: bool) -> dict[str, Any]:
    weak = float(np.mean([c.weak_quality for c in held]))
    strong = float(np.mean([c.strong_quality for c in held]))
    full = full_curve(held, score, cascade)
    gap = strong - weak
    strong_cost = float(np.mean([c.strong_cost for c in held]))
    cost95 = cost_to_reach(full, 0.95 * strong)
    return {
        "row": name,
        "apgr": apgr(curve(held, score, cascade=cascade), weak, strong),
        "cpt50": share_to_reach(full, weak + 0.5 * gap),
        "cpt80": share_to_reach(full, weak + 0.8 * gap),
        "cost_per_1k_at_95": 1000 * cost95,
        "cost_ratio_at_95": cost95 / strong_cost,
        "weak": weak,
        "strong": strong,
        "strong_cost_per_1k": 1000 * strong_cost,
        "curve": curve(held, score, cascade=cascade),
    }


def rule_point(held: Sequence[Case], settings: GateSettings) -> tuple[float, float]:
    """The rule gates alone: one operating point (strong-call share, quality)."""
    escalate = np.array(
        [
            not evaluate(RULE_GATES, GateInput(c.weak_answer, Finish.STOP), settings).passed
            for c in held
        ]
    )
    quality = np.where(escalate, [c.strong_quality for c in held], [c.weak_quality for c in held])
    return float(escalate.mean()), float(quality.mean())


def mmlu_prior(cases: Sequence[Case], subjects: Sequence[str]) -> Floats:
    """Prompt-only: the fit half's per-subject gain from GPT-4 (negated: low = escalate)."""
    gains: dict[str, list[float]] = {}
    for case, subject in zip(cases, subjects, strict=True):
        if case.fit:
            gains.setdefault(subject, []).append(case.strong_quality - case.weak_quality)
    return np.array([-float(np.mean(gains.get(s, [0.0]))) for s in subjects])


def policy_document(fitted: Mapping[str, tuple[Floats, float]]) -> dict[str, Any]:
    """The routellm policy: per benchmark a Mixtral tier under `answer_score`, then GPT-4."""
    classes: dict[str, Any] = {}
    for name, (weights, threshold) in fitted.items():
        settings: dict[str, Any] = {
            "min_length_chars": 1,
            "answer_weights": weights_mapping(weights),
            "min_answer_score": round(threshold, 4),
        }
        if name == "gsm8k":
            settings["final_answer_format"] = GSM8K_SETTINGS.final_answer_format
        classes[name] = {
            "max_tokens": 4096,
            "tiers": [
                {"model": WEAK, "gates": ["finish_reason", "answer_score"]},
                {"model": STRONG, "gates": ["finish_reason"]},
            ],
            "gate_settings": settings,
        }
    return {
        "version": "routellm-" + hashlib.sha1(json.dumps(classes).encode()).hexdigest()[:8],
        "tenants": {
            "routellm": {
                "api_key_sha256": [hashlib.sha256(API_KEY.encode()).hexdigest()],
                "baseline_model": STRONG,
                "default_model_class": "gsm8k",
                "model_classes": classes,
            }
        },
    }


def _table(rows: Sequence[Mapping[str, Any]], bench: str) -> str:
    anchor = ANCHORS[bench]
    lines = [
        f"\n## {bench} (held-back half, {rows[0]['n']} prompts; Mixtral {rows[0]['weak']:.3f}, "
        f"GPT-4 {rows[0]['strong']:.3f})",
        "| source | row | APGR | GPT-4 calls for 50% / 80% of gap | cost/1k at 95% of GPT-4 "
        "| of GPT-4's cost |",
        "|---|---|---|---|---|---|",
        f"| published | RouteLLM {anchor[0]} | {anchor[1]:.3f} | {anchor[2]:.1%} / {anchor[3]:.1%}"
        " | - | - |",
    ]
    for row in rows:
        lines.append(
            f"| OFFLINE | {row['row']} | {row['apgr']:.3f} | {row['cpt50']:.1%} / "
            f"{row['cpt80']:.1%} | ${row['cost_per_1k_at_95']:.3f} "
            f"| {row['cost_ratio_at_95']:.1%} |"
        )
    best = rows[0]["curve"]
    lines.append(
        "curve (GPT-4 calls: quality, cost/1k): "
        + ", ".join(
            f"{s:.0%}: {q:.3f} ${1000 * c:.2f}"
            for s, q, c in zip(best.share, best.quality, best.cost, strict=True)
        )
    )
    return "\n".join(lines)


@dataclass
class Replay:
    """What each benchmark's offline replay found, filled in one benchmark at a time."""

    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fitted: dict[str, tuple[Floats, float]] = field(default_factory=dict)
    held_of: dict[str, list[Case]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def replay_gsm8k(data: Path, pricer: Pricer, replay: Replay) -> None:
    gsm = gsm8k_cases(data, pricer)
    weights = fit_weights(gsm, GSM8K_SETTINGS)
    fit_half = [c for c in gsm if c.fit]
    replay.fitted["gsm8k"] = (
        weights,
        threshold_for(fit_half, answer_scores(fit_half, weights, GSM8K_SETTINGS), MESH_GAP),
    )
    held = replay.held_of["gsm8k"] = [c for c in gsm if not c.fit]
    replay.results["gsm8k"] = [
        summarise(
            "cascade, answer_score (signals, fit half)",
            held,
            answer_scores(held, weights, GSM8K_SETTINGS),
            True,
        )
    ]
    replay.extra["gsm8k_rule_gates"] = rule_point(held, GateSettings(answer=GSM8K_SETTINGS))


def replay_mtbench(data: Path, pricer: Pricer, replay: Replay) -> None:
    mt, weak_judged = mt_bench_cases(data, pricer)
    plain = AnswerSettings()
    mt_weights = fit_weights(mt, plain)
    mt_fit = [c for c in mt if c.fit]
    replay.fitted["mtbench"] = (
        mt_weights,
        threshold_for(mt_fit, answer_scores(mt_fit, mt_weights, plain), MESH_GAP),
    )
    held = replay.held_of["mtbench"] = [c for c in mt if not c.fit]
    judge_scores = np.array([weak_judged[c.prompt][0].score for c in held])
    replay.results["mtbench"] = [
        summarise(
            "cascade, answer_score (signals, fit half)",
            held,
            answer_scores(held, mt_weights, plain),
            True,
        ),
        summarise(
            "cascade, recorded GPT-4 judge on turn 1 (oracle, judge not billed)",
            held,
            judge_scores,
            True,
        ),
    ]
    replay.extra["mtbench_judge_cost"] = judge_costs(held, weak_judged, pricer)


def replay_mmlu(data: Path, pricer: Pricer, replay: Replay) -> None:
    mmlu, subjects = mmlu_cases(data, pricer)
    held_idx = [i for i, c in enumerate(mmlu) if not c.fit]
    prior = mmlu_prior(mmlu, subjects)
    held = replay.held_of["mmlu"] = [mmlu[i] for i in held_idx]
    replay.results["mmlu"] = [
        summarise("router, per-subject prior (fit half), prompt only", held, prior[held_idx], False)
    ]


def print_offline(replay: Replay) -> None:
    for bench, rows in replay.results.items():
        for row in rows:
            row["n"] = len(replay.held_of[bench])
        print(_table(rows, bench))
    share, quality = replay.extra["gsm8k_rule_gates"]
    print(
        f"\nGSM8K rule gates alone ({', '.join(RULE_GATES)}): {share:.1%} GPT-4 calls, "
        f"quality {quality:.3f}"
    )
    print_judge_costs(replay.extra["mtbench_judge_cost"])


def print_mesh(mesh: Mapping[str, Any]) -> None:
    for bench, info in mesh.items():
        print(
            f"MESH {bench}: {info['n']} held-back prompts, {info['strong_share']:.1%} GPT-4 "
            f"calls, quality {info['quality']:.3f}; offline at the same threshold "
            f"{info['offline_share']:.1%}, {info['offline_quality']:.3f}; model choice agrees "
            f"on {info['agreement']:.1%}, replay mismatches {info['mismatches']}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="RouteLLM eval sets: cascade vs. routers")
    parser.add_argument("--data", type=Path, required=True, help="routellm-evals directory")
    parser.add_argument("--mesh-limit", type=int, default=200, help="held-back GSM8K prompts")
    parser.add_argument("--skip-mesh", action="store_true", help="offline rows only (fast)")
    parser.add_argument(
        "--resamples", type=int, default=1000, help="MT-Bench bootstrap resamples of questions"
    )
    parser.add_argument("--write-policy", action="store_true", help=f"rewrite {POLICY_FILE}")
    args = parser.parse_args(argv)
    pricer = Pricer(load_catalogue(), TokenCounter())
    replay = Replay()
    replay_gsm8k(args.data, pricer, replay)
    replay_mtbench(args.data, pricer, replay)
    questions = routellm_mtbench.mt_questions(args.data)
    protocols = routellm_mtbench.evaluate_rows(questions, args.resamples)
    replay_mmlu(args.data, pricer, replay)
    print_offline(replay)
    print(routellm_mtbench.report(protocols, ANCHORS["mtbench"]))
    print(routellm_mtbench.transfer_table(routellm_mtbench.signal_transfer(questions)))
    document = policy_document(replay.fitted)
    if args.write_policy:
        POLICY_FILE.write_text(POLICY_HEADER + yaml.safe_dump(document, sort_keys=False))
    mesh: dict[str, Any] = {}
    if not args.skip_mesh:
        from benchmarks.routing_routellm_mesh import run_mesh

        mesh = run_mesh(args.data, document, replay.held_of, replay.fitted, args.mesh_limit)
        print_mesh(mesh)
    summary = summary_json(replay.results, replay.extra, mesh) | routellm_mtbench.summary(protocols)
    print(json.dumps(summary))
    return 0


def judge_costs(
    held: Sequence[Case], weak_judged: Mapping[str, Any], pricer: Pricer
) -> dict[str, float]:
    """What judging Mixtral's turn-1 answer costs per query, with GPT-4 as the recorded judge
    and with Mixtral as a cheap judge (same tokens), against GPT-4 answering outright."""
    gpt4, cheap = [], []
    for case in held:
        judged = weak_judged[case.prompt][0]
        gpt4.append(pricer.cost(STRONG, judged.judge_prompt, judged.judgment))
        cheap.append(pricer.cost(WEAK, judged.judge_prompt, "[[8]]"))
    strong = float(np.mean([c.strong_cost for c in held]))
    return {
        "gpt4_judge": float(np.mean(gpt4)),
        "cheap_judge": float(np.mean(cheap)),
        "gpt4_answer": strong,
    }


def print_judge_costs(costs: Mapping[str, float]) -> None:
    print(
        f"MT-Bench judge gate per query: GPT-4 as judge ${1000 * costs['gpt4_judge']:.2f}/1k "
        f"({costs['gpt4_judge'] / costs['gpt4_answer']:.0%} of GPT-4 answering both turns, "
        f"${1000 * costs['gpt4_answer']:.2f}/1k); Mixtral as a cheap judge "
        f"${1000 * costs['cheap_judge']:.2f}/1k (its verdicts are not in the data)"
    )


def summary_json(
    results: Mapping[str, Sequence[Mapping[str, Any]]],
    extra: Mapping[str, Any],
    mesh: Mapping[str, Any],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for bench, rows in results.items():
        best = rows[0]
        out[f"{bench}_apgr"] = round(best["apgr"], 4)
        out[f"{bench}_cpt50"] = round(best["cpt50"], 4)
        out[f"{bench}_cpt80"] = round(best["cpt80"], 4)
        cost = best["cost_ratio_at_95"]
        out[f"{bench}_cost_ratio_at_95"] = None if math.isnan(cost) else round(cost, 4)
    out["gsm8k_rule_gates_share"] = round(extra["gsm8k_rule_gates"][0], 4)
    for bench, info in mesh.items():
        out[f"mesh_{bench}_agreement"] = round(info["agreement"], 4)
        out[f"mesh_{bench}_n"] = info["n"]
    return out


POLICY_HEADER = """\
# RouteLLM replay policy (GSM8K, MT-Bench): Mixtral-8x7B, escalating to GPT-4-1106 when its
# answer fails `answer_score` (services/router/answer_gates.py). Weights and min_answer_score
# are fitted on the hash-split fit half by `python -m benchmarks.routing_routellm --write-policy`;
# a test keeps them in step. Use with the simulator replaying ../shared/data/routellm-evals.
# API key: `routellm`.
"""


if __name__ == "__main__":
    raise SystemExit(main())

"""MT-Bench under two protocols, with the bootstrap spread that 34 held-back questions need.

- Per question (RouteLLM's own: `routellm/evals/benchmarks.py` routes on turn 1's prompt and
  serves both turns' recorded judgements from the chosen model): the cascade decides on
  Mixtral's turn-1 answer and the whole question follows.
- Per turn (what a gateway sees: each turn is its own request): each turn is its own cascade
  decision on Mixtral's answer to that turn. The data has Mixtral's turn 2 conditioned on
  Mixtral's turn 1 and GPT-4's on GPT-4's, so a conversation whose two turns are served by
  different models is scored with a turn 2 that followed another turn 1. The `low` / `high`
  replays bound that: each mixed conversation's turn 2 scored at the lower / higher of the two
  recorded turn-2 scores.

Quality is the mean GPT-4 judge score over both turns; the GPT-4-call share counts turns (in
the per-question protocol both turns of a question move together, as in RouteLLM). Gates are
fitted on one half and scored on the other; the oracle rows use the recorded judge score of
Mixtral's answer (the metric itself, not billed), an upper bound for any judge gate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from benchmarks.common import is_fit
from benchmarks.routellm_curves import (
    ROUTELLM_WEAK,
    STRONG,
    Curve,
    Floats,
    apgr,
    fit_logistic,
    mt_bench_judged,
    share_to_reach,
)
from services.router.answer_gates import SIGNALS, AnswerSettings, signals

Mixed = Literal["recorded", "low", "high"]
Bools = NDArray[np.bool_]
PLAIN = AnswerSettings()


@dataclass(frozen=True)
class MtQuestion:
    """One uncontaminated question: its two user turns, each model's judge score per turn and
    Mixtral's answer per turn. Split by turn 1's hash, as `mt_bench_cases` does."""

    turns: tuple[str, str]
    weak: tuple[float, float]
    strong: tuple[float, float]
    weak_answers: tuple[str, str]

    @property
    def fit(self) -> bool:
        return is_fit(self.turns[0])


def mt_questions(data: Path) -> list[MtQuestion]:
    folder = data / "mt_bench"
    with (folder / "contaminated_prompts.jsonl").open(encoding="utf-8") as handle:
        excluded = {json.loads(line)["eval_prompt"] for line in handle if line.strip()}
    judged = mt_bench_judged(data)
    questions = []
    with (folder / "question.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            first, second = (str(t) for t in row["turns"])
            if excluded.intersection((first, second)):
                continue
            qid = int(row["question_id"])
            weak = [judged[(qid, ROUTELLM_WEAK, t)] for t in (1, 2)]
            strong = [judged[(qid, STRONG, t)] for t in (1, 2)]
            questions.append(
                MtQuestion(
                    (first, second),
                    (weak[0].score, weak[1].score),
                    (strong[0].score, strong[1].score),
                    (weak[0].answer, weak[1].answer),
                )
            )
    return questions


def judge_scores(questions: Sequence[MtQuestion]) -> tuple[Floats, Floats]:
    """Each model's recorded judge score, one row per question, one column per turn."""
    weak = np.array([q.weak for q in questions], dtype=np.float64).reshape(-1, 2)
    strong = np.array([q.strong for q in questions], dtype=np.float64).reshape(-1, 2)
    return weak, strong


# ----------------------------------------------------------------- replay and curves


def _per_turn(escalate: Bools) -> Bools:
    """A per-question decision (one value per row) applies to both turns."""
    return escalate if escalate.ndim == 2 else np.repeat(escalate[:, None], 2, axis=1)


def served(weak: Floats, strong: Floats, escalate: Bools, mixed: Mixed = "recorded") -> float:
    """Mean judge score over all turns when `escalate` (per question or per turn) says GPT-4."""
    escalate = _per_turn(escalate)
    quality = np.where(escalate, strong, weak)
    if mixed != "recorded":
        split = escalate[:, 0] != escalate[:, 1]
        bound = np.minimum if mixed == "low" else np.maximum
        quality[split, 1] = bound(weak[split, 1], strong[split, 1])
    return float(quality.mean())


def turn_curve(
    weak: Floats, strong: Floats, gate: Floats, mixed: Mixed = "recorded", bins: int = 10
) -> Curve:
    """RouteLLM's 11 points: escalate what scores below each decile of the gate's score.
    `gate` has one column per turn (per-turn protocol) or one value per question."""
    cuts = np.quantile(gate, np.linspace(0, 1, bins + 1))
    points = []
    for i, cut in enumerate(cuts):
        escalate = gate < cut if i < bins else gate <= cut
        points.append((float(_per_turn(escalate).mean()), served(weak, strong, escalate, mixed)))
    points.sort()
    share, quality = (np.array(v) for v in zip(*points, strict=True))
    return Curve(share, quality, np.zeros_like(share))


def turn_full_curve(weak: Floats, strong: Floats, gate: Floats, mixed: Mixed = "recorded") -> Curve:
    """Every operating point: escalating the k lowest-scoring decisions, k = 0..all."""
    flat = gate.ravel()
    order = np.argsort(flat, kind="stable")
    escalate = np.zeros(flat.shape, dtype=bool)
    points = []
    for k in range(len(flat) + 1):
        shaped = escalate.reshape(gate.shape)
        points.append((float(_per_turn(shaped).mean()), served(weak, strong, shaped, mixed)))
        if k < len(flat):
            escalate[order[k]] = True
    share, quality = (np.array(v) for v in zip(*points, strict=True))
    return Curve(share, quality, np.zeros_like(share))


def row_apgr(weak: Floats, strong: Floats, gate: Floats, mixed: Mixed = "recorded") -> float:
    return apgr(turn_curve(weak, strong, gate, mixed), float(weak.mean()), float(strong.mean()))


def bootstrap_apgr(
    weak: Floats, strong: Floats, gate: Floats, resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """5th-95th percentile of APGR over resamples of questions (both turns move together).
    The gate is held fixed: this is the spread from the few questions, not from the fit."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        pick = rng.integers(0, len(weak), len(weak))
        w, s = weak[pick], strong[pick]
        if s.mean() - w.mean() > 1e-9:  # APGR is undefined without a gap to recover
            values.append(row_apgr(w, s, gate[pick]))
    low, high = np.percentile(values, [5, 95])
    return float(low), float(high)


def row_metrics(
    weak: Floats, strong: Floats, gate: Floats, resamples: int, per_turn: bool
) -> dict[str, Any]:
    w, s = float(weak.mean()), float(strong.mean())
    full = turn_full_curve(weak, strong, gate)
    out: dict[str, Any] = {
        "apgr": row_apgr(weak, strong, gate),
        "ci90": bootstrap_apgr(weak, strong, gate, resamples),
        "cpt50": share_to_reach(full, w + 0.5 * (s - w)),
        "cpt80": share_to_reach(full, w + 0.8 * (s - w)),
    }
    if per_turn:
        out["mixed_low"] = row_apgr(weak, strong, gate, "low")
        out["mixed_high"] = row_apgr(weak, strong, gate, "high")
    return out


# ------------------------------------------------------------------------- the gates


def turn_signals(questions: Sequence[MtQuestion], turn: int) -> Floats:
    rows = [signals(q.turns[turn], q.weak_answers[turn], PLAIN) for q in questions]
    return np.array([[row[name] for name in SIGNALS] for row in rows], dtype=np.float64)


def _probability(x: Floats, weights: Floats) -> Floats:
    return np.asarray(1.0 / (1.0 + np.exp(-(weights[0] + x @ weights[1:]))), dtype=np.float64)


def fit_turn_gate(train: Sequence[MtQuestion]) -> Floats:
    """`answer_score` weights from every turn of `train`; label: escalating would not help."""
    weak, strong = judge_scores(train)
    x = np.vstack([turn_signals(train, 0), turn_signals(train, 1)])
    y = np.concatenate([weak[:, 0] >= strong[:, 0], weak[:, 1] >= strong[:, 1]])
    return np.round(fit_logistic(x, y.astype(np.float64)), 4)


def per_turn_gate(train: Sequence[MtQuestion], test: Sequence[MtQuestion]) -> Floats:
    weights = fit_turn_gate(train)
    return np.column_stack([_probability(turn_signals(test, t), weights) for t in (0, 1)])


def per_question_gate(train: Sequence[MtQuestion], test: Sequence[MtQuestion]) -> Floats:
    """The existing cascade: turn-1 signals, labelled by the question's mean score."""
    weak, strong = judge_scores(train)
    labels = (weak.mean(axis=1) >= strong.mean(axis=1)).astype(np.float64)
    weights = np.round(fit_logistic(turn_signals(train, 0), labels), 4)
    return _probability(turn_signals(test, 0), weights)


def per_question_oracle(_: Sequence[MtQuestion], test: Sequence[MtQuestion]) -> Floats:
    return judge_scores(test)[0][:, 0]


def per_turn_oracle(_: Sequence[MtQuestion], test: Sequence[MtQuestion]) -> Floats:
    return judge_scores(test)[0]


Gate = Callable[[Sequence[MtQuestion], Sequence[MtQuestion]], Floats]
# (protocol, row, gate, per turn)
ROWS: tuple[tuple[str, str, Gate, bool], ...] = (
    ("per question", "cascade, answer_score on turn 1", per_question_gate, False),
    ("per question", "oracle: recorded judge of Mixtral's turn 1", per_question_oracle, False),
    ("per turn", "cascade, answer_score per turn", per_turn_gate, True),
    ("per turn", "oracle: recorded judge of Mixtral's answer per turn", per_turn_oracle, True),
)


# ------------------------------------------------------------------------- the report

HELD, CROSS = "held-back half", "all, cross-fitted"
# JSON key parts per ROWS entry: (oracle infix, protocol suffix).
_KEYS = (("", ""), ("oracle_", ""), ("", "_per_turn"), ("oracle_", "_per_turn"))


def evaluate_rows(questions: Sequence[MtQuestion], resamples: int) -> list[dict[str, Any]]:
    """Every ROWS entry on the held-back half (gates fitted on the fit half) and on all
    questions, each half scored by a gate fitted on the other half (cross-fitting)."""
    fit = [q for q in questions if q.fit]
    held = [q for q in questions if not q.fit]
    rows = []
    for sample, pairs in ((HELD, [(fit, held)]), (CROSS, [(fit, held), (held, fit)])):
        tested = [q for _, test in pairs for q in test]
        weak, strong = judge_scores(tested)
        for (protocol, name, gate, per_turn), keys in zip(ROWS, _KEYS, strict=True):
            score = np.concatenate([gate(train, test) for train, test in pairs])
            metrics = row_metrics(weak, strong, score, resamples, per_turn)
            rows.append(
                {"sample": sample, "n": len(tested), "protocol": protocol, "row": name}
                | {"keys": keys, "weak": float(weak.mean()), "strong": float(strong.mean())}
                | metrics
            )
    return rows


def auc(values: Floats, labels: Bools) -> float:
    """P(a turn where Mixtral was enough scores above one where it was not), ties half."""
    pos, neg = values[labels], values[~labels]
    if not len(pos) or not len(neg):
        return float("nan")
    above = (pos[:, None] > neg[None, :]).mean()
    return float(above + 0.5 * (pos[:, None] == neg[None, :]).mean())


def signal_transfer(
    questions: Sequence[MtQuestion],
) -> list[tuple[str, float, float, float, float]]:
    """Per signal: share of turns where it is non-zero, its AUC on each half's turns, and its
    weight in the per-turn gate fitted on the fit half. A signal transfers when both AUCs sit
    on the same side of 0.5."""
    halves = ([q for q in questions if q.fit], [q for q in questions if not q.fit])
    matrices, labels = [], []
    for half in halves:
        weak, strong = judge_scores(half)
        matrices.append(np.vstack([turn_signals(half, 0), turn_signals(half, 1)]))
        labels.append(np.concatenate([weak[:, 0] >= strong[:, 0], weak[:, 1] >= strong[:, 1]]))
    weights = fit_turn_gate(halves[0])
    every = np.vstack(matrices)
    return [
        (
            name,
            float((every[:, i] != 0).mean()),
            auc(matrices[0][:, i], labels[0]),
            auc(matrices[1][:, i], labels[1]),
            float(weights[i + 1]),
        )
        for i, name in enumerate(SIGNALS)
    ]


def report(rows: Sequence[dict[str, Any]], anchor: tuple[str, float, float, float]) -> str:
    lines = [
        "\n## mtbench, per question vs. per turn (GPT-4 judge score over both turns; 90% = "
        "5th-95th percentile of APGR over question resamples, gate held fixed)",
        "| source | sample | protocol | row | APGR | 90% | GPT-4 calls 50% / 80% "
        "| APGR, mixed turn 2 scored low / high |",
        "|---|---|---|---|---|---|---|---|",
        f"| published | all 72, router trained on Arena | per question | RouteLLM {anchor[0]} "
        f"| {anchor[1]:.3f} | - | {anchor[2]:.1%} / {anchor[3]:.1%} | - |",
    ]
    for row in rows:
        mixed = f"{row['mixed_low']:.3f} / {row['mixed_high']:.3f}" if "mixed_low" in row else "-"
        lines.append(
            f"| OFFLINE | {row['sample']} ({row['n']}) | {row['protocol']} | {row['row']} "
            f"| {row['apgr']:.3f} | {row['ci90'][0]:.3f}-{row['ci90'][1]:.3f} "
            f"| {row['cpt50']:.1%} / {row['cpt80']:.1%} | {mixed} |"
        )
    lines.append(
        "Per turn replays a mixed conversation with the served model's recorded turn 2, which "
        "followed that model's own turn 1; 'low' / 'high' score each mixed turn 2 at the lower "
        "/ higher of the two recorded turn-2 scores."
    )
    return "\n".join(lines)


def transfer_table(transfer: Sequence[tuple[str, float, float, float, float]]) -> str:
    lines = [
        "MT-Bench per-turn signals (label: Mixtral's turn scored >= GPT-4's; AUC 0.5 = none)",
        "| signal | non-zero on turns | AUC fit half | AUC held-back half | weight (fit half) |",
        "|---|---|---|---|---|",
    ]
    for name, nonzero, fit_auc, held_auc, weight in transfer:
        lines.append(f"| {name} | {nonzero:.0%} | {fit_auc:.3f} | {held_auc:.3f} | {weight:+.3f} |")
    return "\n".join(lines)


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Keys: mtbench[_oracle]_apgr[_per_turn] on the held-back half, with _ci90 (and cpt50 /
    cpt80 and _mixed_bounds for per-turn rows); the same under mtbench_crossfit72_."""
    out: dict[str, Any] = {}
    for row in rows:
        oracle, suffix = row["keys"]
        prefix = "mtbench_" if row["sample"] == HELD else "mtbench_crossfit72_"
        if row["sample"] == HELD and not oracle and not suffix:
            # Already in the summary as mtbench_apgr / _cpt50 / _cpt80.
            out["mtbench_apgr_ci90"] = [round(v, 4) for v in row["ci90"]]
            continue
        out[f"{prefix}{oracle}apgr{suffix}"] = round(row["apgr"], 4)
        out[f"{prefix}{oracle}apgr{suffix}_ci90"] = [round(v, 4) for v in row["ci90"]]
        out[f"{prefix}{oracle}cpt50{suffix}"] = round(row["cpt50"], 4)
        out[f"{prefix}{oracle}cpt80{suffix}"] = round(row["cpt80"], 4)
        if "mixed_low" in row:
            bounds = [round(row["mixed_low"], 4), round(row["mixed_high"], 4)]
            out[f"{prefix}{oracle}apgr{suffix}_mixed_bounds"] = bounds
    return out

"""RouteLLM's evaluation sets as cascade cases, the signal fit, and RouteLLM's curve metrics.

Metrics follow RouteLLM's `routellm/evals/evaluate.py`:
- the curve: a score is cut at the quantiles of 10 equal bins (11 points, 0% to 100% strong
  calls); each point's quality is the mean of the served model's label;
- APGR = (AUC - weak AUC) / (strong AUC - weak AUC), AUC by the trapezoid rule over the share
  of strong calls;
- the strong-call share to recover a share of the gap: here the smallest share on the full
  per-prompt curve (RouteLLM interpolates its 11 points, which assumes the curve rises).
A cascade always pays the cheap call and pays the strong one only when it escalates; a router
pays one call. Costs come from cl100k token counts and the catalogue's prices.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from benchmarks.common import is_fit
from services.router.answer_gates import SIGNALS, AnswerSettings, signals
from shared.pricing import PriceCatalogue, TokenUsage
from shared.tokens import TokenCounter

WEAK = "mistralai/mixtral-8x7b-chat"
STRONG = "gpt-4-1106-preview"
ROUTELLM_WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
# GSM8K's answers are whole numbers; the format check is stated per class in the policy.
GSM8K_SETTINGS = AnswerSettings(final_answer_format=r"-?\d+")
Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Case:
    """One prompt: each model's quality label, answer text and call cost (USD)."""

    prompt: str
    weak_quality: float
    strong_quality: float
    weak_answer: str
    weak_cost: float
    strong_cost: float

    @property
    def fit(self) -> bool:
        return is_fit(self.prompt)


def _excluded(path: Path) -> set[str]:
    with path.open(encoding="utf-8") as handle:
        return {json.loads(line)["eval_prompt"] for line in handle if line.strip()}


class Pricer:
    def __init__(self, catalogue: PriceCatalogue, tokens: TokenCounter) -> None:
        self._catalogue = catalogue
        self._tokens = tokens

    def cost(self, model: str, prompt: str, answer: str) -> float:
        usage = TokenUsage(self._tokens.count(prompt), self._tokens.count(answer))
        return self._catalogue.cost_nano_usd(model, usage) / 1e9


def gsm8k_cases(data: Path, pricer: Pricer) -> list[Case]:
    folder = data / "gsm8k"
    excluded = _excluded(folder / "contaminated_prompts.jsonl")
    cases = []
    with (folder / "gsm8k_responses.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["prompt"] in excluded:
                continue
            weak, strong = row[ROUTELLM_WEAK + "_response"], row[STRONG + "_response"]
            cases.append(
                Case(
                    row["prompt"],
                    float(row[ROUTELLM_WEAK] == "True"),
                    float(row[STRONG] == "True"),
                    weak.strip(),
                    pricer.cost(WEAK, row["prompt"], weak),
                    pricer.cost(STRONG, row["prompt"], strong),
                )
            )
    return cases


def _jsonl(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@dataclass(frozen=True)
class MtJudged:
    """One model's judged answer to one MT-Bench turn, and its judge call's size."""

    answer: str
    score: float
    judge_prompt: str
    judgment: str


def mt_bench_judged(data: Path) -> dict[tuple[int, str, int], MtJudged]:
    from services.simulator.replay_routellm import mt_bench_answers

    judged = {}
    for row in _jsonl(data / "mt_bench" / "judgements.jsonl"):
        turn, prompt = int(str(row["turn"])), str(row["user_prompt"])
        answers = mt_bench_answers(prompt, turn)
        key = (int(str(row["question_id"])), str(row["model"]), turn)
        judged[key] = MtJudged(answers[-1], float(str(row["score"])), prompt, str(row["judgment"]))
    return judged


def conversation_cost(
    pricer: Pricer, model: str, turns: Sequence[str], judged: Sequence[MtJudged]
) -> float:
    """Both turns of one model's conversation: turn 2's prompt carries turn 1 and its answer."""
    context, total = "", 0.0
    for turn, answer in zip(turns, judged, strict=False):
        context += turn
        total += pricer.cost(model, context, answer.answer)
        context += answer.answer
    return total


def mt_bench_cases(
    data: Path, pricer: Pricer
) -> tuple[list[Case], dict[str, tuple[MtJudged, MtJudged]]]:
    """Per question (RouteLLM routes on turn 1 and serves both turns from one model): quality
    is the mean judge score of both turns; with each question's two Mixtral judgements."""
    excluded = _excluded(data / "mt_bench" / "contaminated_prompts.jsonl")
    judged = mt_bench_judged(data)
    cases, weak_judged = [], {}
    for question in _jsonl(data / "mt_bench" / "question.jsonl"):
        turns = [str(t) for t in question["turns"]]  # type: ignore[attr-defined]
        if excluded.intersection(turns):
            continue
        qid = int(str(question["question_id"]))
        weak = [judged[(qid, ROUTELLM_WEAK, t)] for t in (1, 2)]
        strong = [judged[(qid, STRONG, t)] for t in (1, 2)]
        costs = [
            conversation_cost(pricer, model, turns, js)
            for model, js in ((WEAK, weak), (STRONG, strong))
        ]
        cases.append(
            Case(
                turns[0],
                sum(j.score for j in weak) / 2,
                sum(j.score for j in strong) / 2,
                weak[0].answer,
                costs[0],
                costs[1],
            )
        )
        weak_judged[turns[0]] = (weak[0], weak[1])
    return cases, weak_judged


def mmlu_cases(data: Path, pricer: Pricer) -> tuple[list[Case], list[str]]:
    """MMLU records correctness only: no answer to read, so the weak answer is empty and the
    output is one letter. Returns the cases and each one's subject."""
    folder = data / "mmlu"
    excluded = _excluded(folder / "contaminated_prompts.jsonl")
    cases, subjects = [], []
    for path in sorted(folder.glob("mmlu_*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["prompt"] in excluded:
                    continue
                prompt = row["prompt"]
                weak_cost = pricer.cost(WEAK, prompt, "A")
                strong_cost = pricer.cost(STRONG, prompt, "A")
                weak, strong = float(row[ROUTELLM_WEAK] == "True"), float(row[STRONG] == "True")
                cases.append(Case(prompt, weak, strong, "", weak_cost, strong_cost))
                subjects.append(path.stem.removeprefix("mmlu_"))
    return cases, subjects


# ------------------------------------------------------------------------ the signal fit


def signal_matrix(cases: Sequence[Case], settings: AnswerSettings) -> Floats:
    rows = [signals(c.prompt, c.weak_answer, settings) for c in cases]
    return np.array([[row[name] for name in SIGNALS] for row in rows], dtype=np.float64)


def fit_logistic(x: Floats, y: Floats, l2: float = 1.0, steps: int = 50) -> Floats:
    """L2-regularised logistic regression by Newton's method (bias first, not penalised);
    deterministic, so a refit reproduces the weights a policy states."""
    design = np.hstack([np.ones((len(x), 1)), x])
    weights = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-design @ weights))
        gradient = design.T @ (p - y) + penalty * weights
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + np.diag(penalty + 1e-9)
        weights = weights - np.linalg.solve(hessian, gradient)
    return weights


def weights_mapping(weights: Floats) -> dict[str, float]:
    names = ("bias", *SIGNALS)
    return {name: round(float(w), 4) for name, w in zip(names, weights, strict=True)}


# ------------------------------------------------------------------------- the curves


@dataclass(frozen=True)
class Curve:
    """Strong-call share, quality and cost per query at each point, lowest share first."""

    share: Floats
    quality: Floats
    cost: Floats


def served(
    cases: Sequence[Case], escalate: NDArray[np.bool_], cascade: bool
) -> tuple[float, float]:
    weak = np.array([c.weak_quality for c in cases])
    strong = np.array([c.strong_quality for c in cases])
    weak_cost = np.array([c.weak_cost for c in cases])
    strong_cost = np.array([c.strong_cost for c in cases])
    quality = float(np.where(escalate, strong, weak).mean())
    first = weak_cost if cascade else np.where(escalate, 0.0, weak_cost)
    return quality, float((first + np.where(escalate, strong_cost, 0.0)).mean())


def curve(cases: Sequence[Case], score: Floats, bins: int = 10, cascade: bool = True) -> Curve:
    """RouteLLM's points: escalate every prompt whose P(weak is enough) is below a quantile."""
    cuts = np.quantile(score, np.linspace(0, 1, bins + 1))
    points = []
    for i, cut in enumerate(cuts):
        escalate = score < cut if i < bins else score <= cut
        points.append((float(escalate.mean()), *served(cases, escalate, cascade)))
    points.sort()
    share, quality, cost = (np.array(v) for v in zip(*points, strict=True))
    return Curve(share, quality, cost)


def apgr(points: Curve, weak: float, strong: float) -> float:
    span = float(points.share[-1] - points.share[0])
    auc = float(np.trapezoid(points.quality, points.share))
    return (auc - weak * span) / ((strong - weak) * span)


def full_curve(cases: Sequence[Case], score: Floats, cascade: bool = True) -> Curve:
    """Every operating point: escalating the k least promising prompts, k = 0..n."""
    order = np.argsort(score, kind="stable")
    points = []
    escalate = np.zeros(len(cases), dtype=bool)
    for k in range(len(cases) + 1):
        points.append((k / len(cases), *served(cases, escalate, cascade)))
        if k < len(cases):
            escalate[order[k]] = True
    share, quality, cost = (np.array(v) for v in zip(*points, strict=True))
    return Curve(share, quality, cost)


def share_to_reach(points: Curve, target: float) -> float:
    reached = np.nonzero(points.quality >= target - 1e-12)[0]
    return float(points.share[reached[0]]) if len(reached) else 1.0


def cost_to_reach(points: Curve, target: float) -> float:
    reached = points.quality >= target - 1e-12
    return float(points.cost[reached].min()) if reached.any() else float("nan")


Scorer = Callable[[Sequence[Case]], Floats]

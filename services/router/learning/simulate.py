"""Offline replay of routing policies over recorded answers: pure Python and numpy.

Every policy is judged the way the mesh would run it: a tier's call is paid for whether or not
its answer is accepted, the last tier's answer is accepted as is, and a tier with no recorded
answer for a prompt is skipped at no cost (the simulator answers 404 there).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from services.router.learning.data import Item
from services.router.learning.embedding import TextEmbedder
from services.router.learning.features import ANSWER_CHARS, PromptInfo, read_prompt
from services.router.learning.scorer import ScorerModel

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Case:
    """One prompt with everything offline code needs: parsed prompt and all embeddings."""

    item: Item
    info: PromptInfo
    prompt_vector: NDArray[np.float32]
    answer_vectors: Mapping[str, NDArray[np.float32]]


def prepare(items: Sequence[Item], embedder: TextEmbedder) -> list[Case]:
    infos = [read_prompt(item.prompt) for item in items]
    texts = [info.focus for info in infos]
    texts += [a.text[:ANSWER_CHARS] for item in items for a in item.answers.values()]
    vectors = dict(zip(texts, embedder.embed(texts), strict=True))
    return [
        Case(
            item,
            info,
            vectors[info.focus],
            {m: vectors[a.text[:ANSWER_CHARS]] for m, a in item.answers.items()},
        )
        for item, info in zip(items, infos, strict=True)
    ]


def complete(cases: Sequence[Case], models: Sequence[str]) -> list[Case]:
    """Cases where every model has a labelled answer, so all policies face the same prompts."""
    return [
        c
        for c in cases
        if all(m in c.item.answers and c.item.answers[m].correct is not None for m in models)
    ]


def feature_row(
    scorer: ScorerModel, case: Case, model: str, earlier: Sequence[str]
) -> NDArray[np.float64]:
    """The scorer's features for `model`'s answer with `earlier` models' answers seen first."""
    seen = [m for m in earlier if m in case.item.answers]
    earlier_vectors = (
        np.stack([case.answer_vectors[m] for m in seen])
        if seen
        else np.zeros((0, len(case.prompt_vector)), dtype=np.float32)
    )
    return scorer.features(
        case.info,
        case.item.answers[model].text,
        model,
        [case.item.answers[m].text for m in seen],
        (case.prompt_vector, case.answer_vectors[model], earlier_vectors),
    )


@dataclass(frozen=True)
class Outcome:
    correct: bool
    cost_usd: float
    model: str
    strong_called: bool


@dataclass(frozen=True)
class Summary:
    n: int
    accuracy: float
    cost_per_1k: float
    strong_fraction: float


def summarise(outcomes: Sequence[Outcome]) -> Summary:
    n = len(outcomes)
    if n == 0:
        return Summary(0, float("nan"), float("nan"), float("nan"))
    return Summary(
        n,
        sum(o.correct for o in outcomes) / n,
        1000.0 * sum(o.cost_usd for o in outcomes) / n,
        sum(o.strong_called for o in outcomes) / n,
    )


def single(case: Case, model: str, strong: str) -> Outcome:
    answer = case.item.answers[model]
    return Outcome(bool(answer.correct), answer.cost_usd, model, model == strong)


def oracle(case: Case, models: Sequence[str], strong: str) -> Outcome:
    """Cheapest correct model (RouterBench's oracle), or the cheapest if none is right."""
    ranked = sorted(models, key=lambda m: case.item.answers[m].cost_usd)
    right = [m for m in ranked if case.item.answers[m].correct]
    return single(case, (right or ranked)[0], strong)


# accept(case, tier_position, model, earlier_models_in_order) -> accept this tier's answer?
Accept = Callable[[Case, int, str, tuple[str, ...]], bool]


def run_cascade(
    case: Case, chain: Sequence[str], accept: Accept, strong: str, start: int = 0
) -> Outcome:
    """Calls chain[start:] in order until a tier's answer is accepted; the last one always is."""
    cost = 0.0
    earlier: list[str] = []
    last = len(chain) - 1
    strong_called = False
    for position in range(start, len(chain)):
        model = chain[position]
        answer = case.item.answers.get(model)
        if answer is None:
            continue
        cost += answer.cost_usd
        strong_called |= model == strong
        if position == last or accept(case, position, model, tuple(earlier)):
            return Outcome(bool(answer.correct), cost, model, strong_called)
        earlier.append(model)
    raise ValueError(f"{case.item.sample_id}: no tier of {list(chain)} has a recorded answer")


@dataclass(frozen=True)
class ScoreTable:
    """A chain's scores, costs and labels per prompt, tiers called in order from the first.

    Cheaper than run_cascade when sweeping thresholds: one scorer pass, then numpy per sweep.
    """

    chain: tuple[str, ...]
    scores: Array  # (n, tiers); the last column is unused (the last tier always accepts)
    costs: Array  # (n, tiers) USD, 0 where the tier has no answer
    correct: Array  # (n, tiers) 0/1
    available: NDArray[np.bool_]  # (n, tiers)


# Scores a batch of (case index, model, earlier models) requests, one probability each.
BatchScore = Callable[[Sequence[tuple[int, str, tuple[str, ...]]]], Array]


def score_table(cases: Sequence[Case], chain: Sequence[str], score: BatchScore) -> ScoreTable:
    n, tiers = len(cases), len(chain)
    scores = np.zeros((n, tiers))
    costs = np.zeros((n, tiers))
    correct = np.zeros((n, tiers))
    available = np.zeros((n, tiers), dtype=bool)
    requests: list[tuple[int, str, tuple[str, ...]]] = []
    where: list[tuple[int, int]] = []
    for i, case in enumerate(cases):
        for k, model in enumerate(chain):
            answer = case.item.answers.get(model)
            if answer is None:
                continue
            available[i, k] = True
            costs[i, k] = answer.cost_usd
            correct[i, k] = float(bool(answer.correct))
            if k < tiers - 1:
                requests.append((i, model, tuple(chain[:k])))
                where.append((i, k))
    if requests:
        rows, cols = zip(*where, strict=True)
        scores[list(rows), list(cols)] = score(requests)
    return ScoreTable(tuple(chain), scores, costs, correct, available)


def table_outcomes(table: ScoreTable, thresholds: Sequence[float]) -> tuple[Array, Array, Array]:
    """Per prompt: (correct, cost USD, strong model called) under per-tier thresholds."""
    n, tiers = table.scores.shape
    bars = np.asarray([*thresholds[: tiers - 1], -np.inf][:tiers])
    accepts = table.available & (table.scores >= bars)
    accepts[:, -1] = True
    first = accepts.argmax(axis=1)
    called = table.available & (np.arange(tiers)[None, :] <= first[:, None])
    rows = np.arange(n)
    return (
        table.correct[rows, first],
        (table.costs * called).sum(axis=1),
        called[:, -1].astype(np.float64),
    )


# A cost cap on a subset of prompts: (which prompts, max mean cost per prompt in USD).
CostCap = tuple[NDArray[np.bool_], float]


def fit_thresholds(
    table: ScoreTable,
    *,
    cost_caps: Sequence[CostCap] = (),
    min_accuracy: float | None = None,
    grid: Sequence[float] = tuple(np.linspace(0.0, 1.0, 41)),
) -> tuple[tuple[float, ...], Summary] | None:
    """Grid search over per-tier thresholds on fitting data.

    With cost_caps: the most accurate setting whose mean cost stays within every cap (e.g.
    one cap per task, so no task's budget is spent on another). With min_accuracy instead:
    the cheapest setting reaching it. None when nothing qualifies.
    """
    best: tuple[tuple[float, ...], Summary] | None = None
    for combo in itertools.product(grid, repeat=table.scores.shape[1] - 1):
        correct, cost, strong = table_outcomes(table, combo)
        if any(float(cost[mask].mean()) > cap for mask, cap in cost_caps if mask.any()):
            continue
        summary = Summary(
            len(correct), float(correct.mean()), 1000 * float(cost.mean()), float(strong.mean())
        )
        if min_accuracy is not None and summary.accuracy < min_accuracy:
            continue
        if best is None or _better(summary, best[1], by_cost=min_accuracy is not None):
            best = (tuple(float(t) for t in combo), summary)
    return best


def _better(candidate: Summary, incumbent: Summary, *, by_cost: bool) -> bool:
    if by_cost:
        return (candidate.cost_per_1k, -candidate.accuracy) < (
            incumbent.cost_per_1k,
            -incumbent.accuracy,
        )
    return (candidate.accuracy, -candidate.cost_per_1k) > (
        incumbent.accuracy,
        -incumbent.cost_per_1k,
    )

"""Agreement cascades on RouterBench: can the cheap models' consensus stand in for GPT-4?

    .venv/bin/python -m benchmarks.routing_agreement --data ../shared/data/routerbench-subset

ARC and WinoGrande answers are one letter, and the one run-time signal a gateway has about a
letter is whether independent models give the same one (FrugalGPT's answer consistency). This
benchmark searches that whole policy family offline, over the recorded answers and costs:

    ask cheap models in order; as soon as `need` of them give the same answer, serve it;
    once no answer can reach `need` with the calls left, ask GPT-4 and serve its answer.

Every ordered chain of up to four of the eight cheap models, with every `need`, is scored on
each task (2,080 chains, 7,848 policies). The policy a router would ship is chosen on *_train
only (the most accurate within 15% of GPT-4's cost) and reported on *_test. A second row picks
the best policy **on test itself**: a hindsight ceiling for the family, not a result. Answers
are compared in the scorer's canonical form (`features.canonical`: the option letter, or the
code's syntax tree). Prompts where some model has no labelled answer are left out, as in
`benchmarks/routing.py`.

The last line printed is one JSON object with, per task and overall, the train-chosen and the
hindsight policy's accuracy minus GPT-4's and cost as a share of GPT-4's.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from services.router.learning.data import Item, Split, load_split
from services.router.learning.features import canonical, read_prompt

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared/data/routerbench-subset"
GPT4 = "gpt-4-1106-preview"
CHEAP = (
    "mistralai/mistral-7b-chat",
    "WizardLM/WizardLM-13B-V1.2",
    "meta/code-llama-instruct-34b-chat",
    "mistralai/mixtral-8x7b-chat",
    "zero-one-ai/Yi-34B-Chat",
    "meta/llama-2-70b-chat",
    "claude-instant-v1",
    "gpt-3.5-turbo-1106",
)
MAX_CHAIN = 4
BUDGET = 0.15
OVERALL = "overall"
UNPARSED = -1


@dataclass(frozen=True)
class Policy:
    chain: tuple[str, ...]
    need: int

    def describe(self) -> str:
        names = " > ".join(m.split("/")[-1] for m in self.chain)
        return f"{names}, {self.need} agree, else GPT-4"


@dataclass(frozen=True)
class Table:
    """One task's recorded answers as arrays: rows are prompts, columns the models."""

    models: tuple[str, ...]
    answers: NDArray[np.int64]  # canonical answer id; UNPARSED where it has none
    correct: NDArray[np.bool_]
    cost: NDArray[np.float64]

    def column(self, model: str) -> int:
        return self.models.index(model)


@dataclass(frozen=True)
class Result:
    correct: NDArray[np.bool_]  # per prompt
    cost: NDArray[np.float64]  # per prompt, USD

    def accuracy(self) -> float:
        return float(self.correct.mean())


def build_table(items: Sequence[Item], models: Sequence[str]) -> Table:
    usable = [
        i for i in items if all(m in i.answers and i.answers[m].correct is not None for m in models)
    ]
    ids: dict[str, int] = {}
    answers = np.full((len(usable), len(models)), UNPARSED, dtype=np.int64)
    for row, item in enumerate(usable):
        info = read_prompt(item.prompt)
        for col, model in enumerate(models):
            form = canonical(item.answers[model].text, info)
            if form:
                answers[row, col] = ids.setdefault(form, len(ids))
    correct = np.array([[i.answers[m].correct for m in models] for i in usable], dtype=np.bool_)
    cost = np.array([[i.answers[m].cost_usd for m in models] for i in usable], dtype=np.float64)
    return Table(tuple(models), answers, correct, cost)


def _votes(answers: NDArray[np.int64], upto: int) -> NDArray[np.int64]:
    """For each of the first `upto` calls, how many of them gave the same parsed answer."""
    asked = answers[:, :upto]
    same = (asked[:, :, None] == asked[:, None, :]) & (asked[:, None, :] != UNPARSED)
    return np.where(asked != UNPARSED, same.sum(axis=2), 0)


def run_policy(table: Table, policy: Policy) -> Result:
    cols = [table.column(m) for m in policy.chain]
    answers, correct, cost = table.answers[:, cols], table.correct[:, cols], table.cost[:, cols]
    rows = len(answers)
    done = np.zeros(rows, dtype=np.bool_)
    right = np.zeros(rows, dtype=np.bool_)
    spent = np.zeros(rows, dtype=np.float64)
    for step in range(len(cols)):
        spent[~done] += cost[~done, step]
        votes = _votes(answers, step + 1)
        # The first call (in chain order) whose answer has the votes is the one served.
        agreed = votes >= policy.need
        first = np.argmax(agreed, axis=1)
        serve = ~done & agreed.any(axis=1)
        right[serve] = correct[serve, first[serve]]
        done |= serve
        calls_left = len(cols) - step - 1
        hopeless = ~done & (votes.max(axis=1, initial=0) + calls_left < policy.need)
        done |= _escalate(table, hopeless, right, spent)
    _escalate(table, ~done, right, spent)
    return Result(right, spent)


def _escalate(
    table: Table, rows: NDArray[np.bool_], right: NDArray[np.bool_], spent: NDArray[np.float64]
) -> NDArray[np.bool_]:
    top = table.column(GPT4)
    right[rows] = table.correct[rows, top]
    spent[rows] += table.cost[rows, top]
    return rows


def policies(cheap: Sequence[str], max_chain: int = MAX_CHAIN) -> list[Policy]:
    return [
        Policy(chain, need)
        for length in range(1, max_chain + 1)
        for chain in itertools.permutations(cheap, length)
        for need in range(1, length + 1)
    ]


def gpt4_only(table: Table) -> Result:
    top = table.column(GPT4)
    return Result(table.correct[:, top].copy(), table.cost[:, top].copy())


@dataclass(frozen=True)
class Scored:
    policy: Policy
    accuracy: float
    cost_share: float  # of GPT-4's cost on the same prompts


def score_family(table: Table, family: Sequence[Policy]) -> list[Scored]:
    top_cost = float(gpt4_only(table).cost.sum())
    scored = []
    for policy in family:
        result = run_policy(table, policy)
        scored.append(Scored(policy, result.accuracy(), float(result.cost.sum()) / top_cost))
    return scored


def best_within(scored: Sequence[Scored], budget: float) -> Scored:
    """The most accurate policy within `budget` of GPT-4's cost (then the cheapest)."""
    fitting = [s for s in scored if s.cost_share <= budget]
    return max(fitting, key=lambda s: (s.accuracy, -s.cost_share))


def cheapest_reaching(scored: Sequence[Scored], accuracy: float) -> Scored | None:
    reaching = [s for s in scored if s.accuracy >= accuracy]
    return min(reaching, key=lambda s: s.cost_share) if reaching else None


def tables(data: Path, split: Split, cheap: Sequence[str]) -> dict[str, Table]:
    models = (*cheap, GPT4)
    return {task: build_table(items, models) for task, items in load_split(data, split).items()}


def figures(results: Mapping[str, Result], baselines: Mapping[str, Result]) -> dict[str, float]:
    """Accuracy minus GPT-4's and cost / GPT-4's cost, per task and pooled over all prompts."""
    out: dict[str, float] = {}
    pooled = {
        OVERALL: (
            np.concatenate([r.correct for r in results.values()]),
            np.concatenate([r.cost for r in results.values()]),
            np.concatenate([b.correct for b in baselines.values()]),
            np.concatenate([b.cost for b in baselines.values()]),
        )
    }
    each = {
        t: (r.correct, r.cost, baselines[t].correct, baselines[t].cost) for t, r in results.items()
    }
    for name, (right, cost, top_right, top_cost) in {**each, **pooled}.items():
        out[f"{name}_accuracy"] = round(float(right.mean()), 4)
        out[f"{name}_accuracy_vs_gpt4"] = round(float(right.mean() - top_right.mean()), 4)
        out[f"{name}_cost_ratio_vs_gpt4"] = round(float(cost.sum() / top_cost.sum()), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="routerbench-subset folder")
    parser.add_argument("--budget", type=float, default=BUDGET, help="cost share of GPT-4's")
    args = parser.parse_args()
    data = Path(args.data)
    family = policies(CHEAP)
    train, test = tables(data, "train", CHEAP), tables(data, "test", CHEAP)
    on_train = {task: score_family(table, family) for task, table in train.items()}
    on_test = {task: score_family(table, family) for task, table in test.items()}
    chosen = {task: best_within(on_train[task], args.budget).policy for task in test}
    hindsight = {task: best_within(on_test[task], args.budget).policy for task in test}
    print(f"{len(family)} agreement policies per task; budget {args.budget:.0%} of GPT-4's cost")
    for task in test:
        print(f"  {task}: chosen on train: {chosen[task].describe()}")
        print(f"  {task}: best on test (hindsight): {hindsight[task].describe()}")
    top = {task: gpt4_only(table) for task, table in test.items()}
    summary = {
        "chosen on train": figures({t: run_policy(test[t], p) for t, p in chosen.items()}, top),
        "hindsight": figures({t: run_policy(test[t], p) for t, p in hindsight.items()}, top),
        "gpt4": figures(top, top),
    }
    print(_markdown(summary, [*test, OVERALL]))
    print(_frontier(on_test, {t: r.accuracy() for t, r in top.items()}))
    print(json.dumps({"budget": args.budget, "policies": len(family), **summary}))


def _frontier(on_test: Mapping[str, Sequence[Scored]], gpt4_accuracy: Mapping[str, float]) -> str:
    """Hindsight on test: the family's best accuracy at each budget, and what matching GPT-4
    would cost. Chosen with test labels, so a ceiling for the family, not a result."""
    budgets = (0.15, 0.25, 0.5, 1.0)
    lines = [
        "| task | "
        + " | ".join(f"best within {b:.0%}" for b in budgets)
        + " | cheapest >= GPT-4 |",
        "|---" * (len(budgets) + 2) + "|",
    ]
    for task, scored in on_test.items():
        cells = [f"{best_within(scored, b).accuracy:.3f}" for b in budgets]
        match = cheapest_reaching(scored, gpt4_accuracy[task])
        cells.append(f"{match.cost_share:.1%}" if match else "none")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _markdown(summary: Mapping[str, Mapping[str, float]], splits: Sequence[str]) -> str:
    lines = ["| policy | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
    for name, values in summary.items():
        cells = [
            f"{values[f'{s}_accuracy']:.3f}, {values[f'{s}_cost_ratio_vs_gpt4']:.1%}"
            for s in splits
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""The `code_tests` gate on RouterBench's MBPP test split, offline (recorded answers and costs).

    .venv/bin/python -m benchmarks.routing_code --data ../shared/data/routerbench-subset

The heuristic cascade of benchmarks/routing.py (Sluice's tiers, rule gates with MBPP's format
check) against the same cascade with the opt-in `code_tests` gate on each cheap tier: the
answer's code is run in the sandbox (code_gate.py) with any tests the prompt states. RouterBench's
MBPP prompts state none, so the gate runs each answer's own code and examples. The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from benchmarks.routing import RULE_GATES, rule_settings
from services.router.code_gate import CodeLimits, CodeRunner, network_isolation, stated_tests
from services.router.gates import GateInput, evaluate
from services.router.learning.cascade_design import CascadeDesign
from services.router.learning.data import Item, load_split
from services.router.learning.scorer import MODELS_DIR
from shared.chat import Finish


async def run(
    items: Sequence[Item], tiers: Sequence[str], runner: CodeRunner | None
) -> dict[str, float]:
    correct = cost = strong = 0.0
    for item in items:
        for position, model in enumerate(tiers):
            answer = item.answers[model]
            cost += answer.cost_usd
            if position == len(tiers) - 1:
                break
            ruled = evaluate(RULE_GATES, GateInput(answer.text, Finish.STOP), rule_settings("mbpp"))
            if ruled.passed and runner is not None:
                ruled_code = await runner.check(item.prompt, answer.text)
                if not ruled_code.passed:
                    continue
            if ruled.passed:
                break
        correct += float(bool(answer.correct))
        strong += float(position == len(tiers) - 1)
    n = len(items)
    return {"accuracy": correct / n, "cost_per_1k": 1000 * cost / n, "strong_share": strong / n}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="code_tests gate on RouterBench MBPP")
    parser.add_argument("--data", type=Path, required=True, help="routerbench-subset directory")
    args = parser.parse_args(argv)
    design = CascadeDesign.load(MODELS_DIR / "cascade.json")
    items = [
        i
        for i in load_split(args.data, "test")["mbpp"]
        if all(m in i.answers and i.answers[m].correct is not None for m in design.tiers)
    ]
    with_tests = sum(bool(stated_tests(i.prompt)) for i in items)
    isolation = network_isolation()
    runner = CodeRunner(CodeLimits(), isolation)
    rows = {
        "rule gates": asyncio.run(run(items, design.tiers, None)),
        "rule gates + code_tests": asyncio.run(run(items, design.tiers, runner)),
        f"always {design.strong}": asyncio.run(run(items, design.tiers[-1:], None)),
    }
    print(f"MBPP test: {len(items)} prompts, {with_tests} state their tests; tiers {design.tiers}")
    print(f"network fence: {' '.join(isolation) or 'socket block inside the program'}")
    print("| row | accuracy | cost/1k | GPT-4 share |\n|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['accuracy']:.3f} | ${row['cost_per_1k']:.3f} "
            f"| {row['strong_share']:.1%} |"
        )
    print(json.dumps({k.replace(" ", "_"): v for k, v in rows.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""RouterBench CSVs (as redistributed by RouterDC) loaded into typed rows.

Layout, from the data's SOURCE.md: `prompt` and `<model>|model_response` hold the string repr
of a Python list whose first element is the text, `<model>` the 0/1 correctness, and
`<model>|total_cost` the call's USD cost. Training reads `*_train` files only; `*_test` labels
are for the benchmark's final report, so `load_split` takes the split explicitly.
"""

from __future__ import annotations

import ast
import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Split = Literal["train", "test"]
# File stem prefix -> task name as reported. "winograde" is the files' own spelling.
TASK_FILES = {"arc": "arc_challenge", "mbpp": "mbpp", "winogrande": "winograde"}
_RESPONSE = "|model_response"
_COST = "|total_cost"
# Few-shot prompts and long code answers exceed csv's default 128 KiB field limit.
_FIELD_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class Recorded:
    """One model's recorded answer to one prompt; `correct` is None where RouterBench has none."""

    text: str
    correct: bool | None
    cost_usd: float


@dataclass(frozen=True)
class Item:
    sample_id: str
    task: str
    prompt: str
    answers: Mapping[str, Recorded]


def _first_text(raw: str) -> str:
    value = ast.literal_eval(raw)
    if not isinstance(value, list) or not value or not isinstance(value[0], str):
        raise ValueError("not a non-empty list of strings")
    return value[0]


def _row_item(task: str, row: Mapping[str, str], models: list[str]) -> Item:
    answers: dict[str, Recorded] = {}
    for model in models:
        raw = row[model + _RESPONSE]
        if not raw:
            continue
        label = row[model]
        answers[model] = Recorded(
            _first_text(raw),
            None if label == "" else float(label) >= 0.5,
            float(row[model + _COST] or 0.0),
        )
    return Item(row["sample_id"], task, _first_text(row["prompt"]), answers)


def load_file(path: Path, task: str) -> list[Item]:
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        models = [c.removesuffix(_RESPONSE) for c in header if c.endswith(_RESPONSE)]
        try:
            return [_row_item(task, row, models) for row in reader]
        except (ValueError, SyntaxError, KeyError) as error:
            raise ValueError(f"{path} line {reader.line_num}: {error}") from error


def load_split(directory: Path, split: Split) -> dict[str, list[Item]]:
    """Every task's rows of one split, keyed by task name."""
    return {
        task: load_file(directory / f"{stem}_{split}.csv", task)
        for task, stem in TASK_FILES.items()
    }


def models_of(items: Mapping[str, list[Item]]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for rows in items.values():
        for item in rows:
            seen.update(dict.fromkeys(item.answers))
    return tuple(seen)

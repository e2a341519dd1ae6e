from __future__ import annotations

import csv
from pathlib import Path

import pytest

from services.router.learning.data import load_file, load_split, models_of

HEADER = [
    "",
    "sample_id",
    "eval_name",
    "prompt",
    "m1",
    "m1|model_response",
    "m1|total_cost",
    "m2",
    "m2|model_response",
    "m2|total_cost",
    "oracle_model_to_route_to",
]


def write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def test_rows_parse_into_prompts_answers_labels_and_costs(tmp_path: Path) -> None:
    path = write(
        tmp_path / "arc_challenge_train.csv",
        [
            ["0", "arc.1", "arc", "['Q1?']", "1.0", "['A']", "0.001", "0.0", "['B']", "0.01", "m1"],
            ["1", "arc.2", "arc", "['Q2?']", "", "", "", "1.0", "['C']", "0.02", "m2"],
        ],
    )
    first, second = load_file(path, "arc")
    assert first.prompt == "Q1?" and first.task == "arc"
    assert first.answers["m1"].text == "A" and first.answers["m1"].correct is True
    assert first.answers["m2"].correct is False and first.answers["m2"].cost_usd == 0.01
    assert "m1" not in second.answers  # no recorded result for that model
    assert models_of({"arc": [first, second]}) == ("m1", "m2")


def test_a_malformed_row_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bad.csv", [["0", "x", "arc", "not a list", "1", "['A']", "0", "", "", "", ""]]
    )
    with pytest.raises(ValueError, match=r"bad\.csv line"):
        load_file(path, "arc")


def test_a_split_reads_only_its_own_files(tmp_path: Path) -> None:
    row = ["0", "s", "e", "['Q']", "1.0", "['A']", "0.001", "1.0", "['A']", "0.002", "m1"]
    for stem in ("arc_challenge", "mbpp", "winograde"):
        write(tmp_path / f"{stem}_train.csv", [row])
    # No *_test files exist: reading the train split must not need them.
    train = load_split(tmp_path, "train")
    assert set(train) == {"arc", "mbpp", "winogrande"}
    with pytest.raises(FileNotFoundError):
        load_split(tmp_path, "test")

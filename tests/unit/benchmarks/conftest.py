"""Tiny copies of the shared data folders the cache suites read, written into tmp_path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from benchmarks.cache_long_prompts import SETS

CLAUSES = "\n".join(
    f"Clause {i}. The supplier delivers the goods within {i + 2} days of each order."
    for i in range(40)
)


def _csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "category"])
        writer.writerows(rows)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Two long documents with two questions each, and a few questions of every cache dataset."""
    folder = tmp_path / "leval-longqa"
    folder.mkdir()
    documents = [
        {"input": CLAUSES, "instructions": ["What is the delivery time in clause 3?",
                                            "Who wrote Moby-Dick?"]},
        {"input": CLAUSES.replace("supplier", "vendor"),
         "instructions": ["Which party delivers the goods?", "How many clauses are there?"]},
    ]  # fmt: skip
    for name in SETS:
        rows = documents if name == SETS[0] else []
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    questions = [f"how do i reset the password of account number {i}" for i in range(12)]
    (tmp_path / "qqp-gptcache").mkdir()
    qqp = [{"text_a": q, "text_b": q + " please", "label": i % 2} for i, q in enumerate(questions)]
    (tmp_path / "qqp-gptcache" / "similiar_qqp_full.json").write_text(json.dumps(qqp))
    (tmp_path / "banking77").mkdir()
    _csv(tmp_path / "banking77" / "train.csv", [("my card has not arrived", "card_arrival")])
    _csv(tmp_path / "banking77" / "test.csv",
         [(f"my card has not arrived yet {i}", "card_arrival") for i in range(8)])  # fmt: skip
    (tmp_path / "clinc150").mkdir()
    clinc = {
        "train": [["what is the weather today", "weather"]],
        "test": [[f"what is the weather like today {i}", "weather"] for i in range(8)],
        "oos_test": [[f"sing me a song number {i}", "oos"] for i in range(4)],
    }
    (tmp_path / "clinc150" / "data_full.json").write_text(json.dumps(clinc))
    (tmp_path / "gptcache-mock-paraphrases").mkdir()
    mock = [{"origin": "what is python", "similar": "what is the python language"}]
    (tmp_path / "gptcache-mock-paraphrases" / "mock_data.json").write_text(json.dumps(mock))
    return tmp_path

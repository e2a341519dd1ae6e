"""The cache-quality workloads: QQP pairs, BANKING77, CLINC150 and GPTCache's paraphrases, as
replay `Space`s (stored texts with their answer labels, and probes with the answer they should
get), each probe marked fit or held back by a hash of its text (benchmarks.common.is_fit).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from benchmarks.common import hash_order, is_fit
from services.cache.verifiers.replay import Probe, Space

Workloads = dict[str, list[Space]]


def load_workloads(data: Path, sizes: argparse.Namespace) -> Workloads:
    return {
        "qqp": _qqp(data, sizes.qqp_pairs),
        "banking77": _banking(data, sizes.refs_per_intent),
        "clinc150": _clinc(data, sizes.clinc_queries, sizes.refs_per_intent),
        "mock": _mock(data),
    }


def _qqp(data: Path, pairs: int) -> list[Space]:
    """One namespace per pair: text_a stored, text_b looked up; only duplicates may hit."""
    rows = json.loads((data / "qqp-gptcache" / "similiar_qqp_full.json").read_text())
    rows.sort(key=lambda r: hash_order(r["text_a"] + "\n" + r["text_b"]))
    spaces = []
    for i, row in enumerate(rows[:pairs]):
        label = f"qqp-{i}"
        probe = Probe(
            row["text_b"],
            label if row["label"] == 1 else None,
            is_fit(row["text_a"] + "\n" + row["text_b"]),
        )
        spaces.append(Space(label, {row["text_a"]: label}, [probe]))
    return spaces


def _references(rows: Iterable[tuple[str, str]], per_intent: int) -> dict[str, str]:
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in rows:
        by_intent[intent].append(text)
    return {
        text: intent
        for intent, texts in sorted(by_intent.items())
        for text in sorted(texts, key=hash_order)[:per_intent]
    }


def _banking(data: Path, per_intent: int) -> list[Space]:
    def read(name: str) -> list[tuple[str, str]]:
        with (data / "banking77" / name).open(newline="", encoding="utf-8") as f:
            return [(r["text"], r["category"]) for r in csv.DictReader(f)]

    space = Space("banking77", _references(read("train.csv"), per_intent))
    space.probes = [Probe(t, i, is_fit(t)) for t, i in read("test.csv")]
    return [space]


def _clinc(data: Path, queries: int, per_intent: int) -> list[Space]:
    full = json.loads((data / "clinc150" / "data_full.json").read_text())
    space = Space("clinc150", _references(full["train"], per_intent))
    tests = sorted(full["test"], key=lambda r: hash_order(r[0]))[:queries]
    space.probes = [Probe(t, i, is_fit(t)) for t, i in tests]
    space.probes += [Probe(t, None, is_fit(t)) for t, _ in full["oos_test"]]
    return [space]


def _mock(data: Path) -> list[Space]:
    """GPTCache's own paraphrase file: positives only, all origins in one namespace."""
    rows = json.loads((data / "gptcache-mock-paraphrases" / "mock_data.json").read_text())
    labels: dict[str, str] = {}
    for i, row in enumerate(rows):  # a repeated origin keeps one entry, so one label
        labels.setdefault(row["origin"], f"mock-{i}")
    space = Space("mock", dict(labels))
    space.probes = [Probe(r["similar"], labels[r["origin"]], is_fit(r["similar"])) for r in rows]
    return [space]

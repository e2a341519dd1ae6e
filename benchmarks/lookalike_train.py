"""Trains the cross-encoder verifier and writes services/cache/verifier_crossenc.onnx.

    python -m benchmarks.lookalike_train [--data ../shared/data] [--embed-cache F.npz]

Training examples (fit halves only; no held-back text is read for training):
1. every candidate pair a fit-half lookup of the cache-quality workloads (QQP, BANKING77,
   CLINC150, GPTCache's paraphrases) meets at or above the cosine floor, labelled by whether
   the candidate's answer is the right one (replay.labelled_pairs);
2. the look-alike set's fit half (benchmarks/data/lookalike/pairs.jsonl);
3. hard negatives and same-kind paraphrases that services/cache/verifiers/perturb.py makes
   from fit-half questions of those workloads (seed 0), none sharing a text with the
   look-alike set.
The serving threshold is the lowest probability at which, on the fit halves replayed through
the cache's own lookup loop, at most TARGET of the look-alike must-miss pairs are served; the
pooled QQP/BANKING77/CLINC150 figures at each threshold are printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.cache_quality_data import Workloads, load_workloads
from benchmarks.common import DEFAULT_DATA, REPO, embed
from benchmarks.lookalike_gen import as_spaces, load_pairs
from services.cache.verifiers.crossenc import DEFAULT_CROSSENC_PATH
from services.cache.verifiers.perturb import perturb
from services.cache.verifiers.replay import (
    ScoreThreshold,
    Space,
    labelled_pairs,
    score,
    simulate,
)
from services.cache.verifiers.train_crossenc import (
    Example,
    TrainConfig,
    export,
    from_checkpoint,
    torch_scores,
    train,
)

FLOOR = 0.5
TARGET = 0.015  # on the fit half, under the 2% goal to leave room for the held-back half
THRESHOLDS = tuple(round(x, 2) for x in np.arange(0.30, 0.99, 0.02))
PERTURBED_QUESTIONS = 3000  # the first model's budget, kept for its command line
# Per (kind, keeps meaning) bucket: real questions give far more negation and entity edits
# than unit or number ones, and units and numbers are what the first model confused most
# (benchmarks/README.md, issue 16), so those two get twice the room.
PER_KIND = 450
HEAVY_KINDS = {"unit": 2, "number": 2}
SCARCE_KINDS = {"unit", "number", "time", "date"}
MAX_WORKLOAD_PAIRS = 9000


def _workload_examples(workloads: Workloads, vectors: dict[str, np.ndarray]) -> list[Example]:
    pairs = labelled_pairs(workloads, vectors, FLOOR)
    examples = [(p.pair.query, p.pair.candidate, float(p.correct)) for p in pairs]
    random.Random(0).shuffle(examples)
    return examples[:MAX_WORKLOAD_PAIRS]


def _perturbed_examples(workloads: Workloads, exclude: set[str]) -> list[Example]:
    """Edits of fit-half questions, at most PER_KIND (times HEAVY_KINDS) per kind and label."""
    texts = sorted(
        {p.text for spaces in workloads.values() for s in spaces for p in s.probes if p.fit}
        - exclude
    )
    random.Random(0).shuffle(texts)
    buckets: dict[tuple[str, bool], set[Example]] = {}
    for text in texts:
        edits = perturb(text, 0)
        # Numbers, times, dates and units are rare in real questions, and their edits draw
        # the new value at random: more seeds give more distinct pairs of those kinds.
        if any(e.kind in SCARCE_KINDS for e in edits):
            edits += [
                e for seed in (1, 2, 3) for e in perturb(text, seed) if e.kind in SCARCE_KINDS
            ]
        for edit in edits:
            bucket = buckets.setdefault((edit.kind, edit.keeps_meaning), set())
            if edit.text not in exclude and len(bucket) < PER_KIND * HEAVY_KINDS.get(edit.kind, 1):
                bucket.add((edit.text, text, float(edit.keeps_meaning)))
    for (kind, keeps), bucket in sorted(buckets.items()):
        print(f"perturbed {kind} {'keep' if keeps else 'change'}: {len(bucket)}", file=sys.stderr)
    return [e for _, bucket in sorted(buckets.items()) for e in sorted(bucket)]


def embed_atomic(texts: Sequence[str], path: Path | None) -> dict[str, np.ndarray]:
    """embed() through a private copy of the cache file, renamed over it when written, so a
    reader in another process never sees half a file."""
    if path is None:
        return embed(texts)
    scratch = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        shutil.copyfile(path, scratch)
    vectors = embed(texts, scratch)
    if scratch.exists():
        os.replace(scratch, path)
    return vectors


def _checkpoint(out: Path, epoch: int) -> Path:
    return out.with_name(f"{out.stem}.epoch{epoch + 1}.pt")


def torch_save(module: object, path: Path) -> None:
    """Keeps the trained weights beside the output until the export is done."""
    import torch

    torch.save(module.state_dict(), path)  # type: ignore[attr-defined]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--embed-cache", default=None)
    parser.add_argument("--out", default=str(DEFAULT_CROSSENC_PATH))
    parser.add_argument("--layers", type=int, default=TrainConfig.layers)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--max-tokens", type=int, default=TrainConfig.max_tokens)
    parser.add_argument("--from-checkpoint", default=None, help="an epoch's .pt: no training")
    parser.add_argument("--no-quantize", action="store_true")
    parser.add_argument("--qqp-pairs", type=int, default=5000)
    parser.add_argument("--clinc-queries", type=int, default=2000)
    parser.add_argument("--refs-per-intent", type=int, default=10)
    args = parser.parse_args(argv)
    started = time.monotonic()
    workloads = load_workloads(Path(args.data), args)
    lookalikes = load_pairs()
    workloads["lookalike"] = as_spaces(lookalikes)
    texts = {t for spaces in workloads.values() for s in spaces for t in s.entries}
    texts |= {p.text for spaces in workloads.values() for s in spaces for p in s.probes}
    vectors = embed_atomic(sorted(texts), Path(args.embed_cache) if args.embed_cache else None)
    lookalike_texts = {t for p in lookalikes for t in (p.stored, p.asked)}
    base = {k: v for k, v in workloads.items() if k != "lookalike"}
    examples = _workload_examples(base, vectors)
    examples += [(p.asked, p.stored, float(p.must_hit)) for p in lookalikes if p.half == "fit"]
    examples += _perturbed_examples(base, lookalike_texts)
    positives = sum(y for _, _, y in examples)
    print(f"{len(examples)} training pairs ({positives:.0f} positive)", file=sys.stderr)
    config = TrainConfig(layers=args.layers, epochs=args.epochs, max_tokens=args.max_tokens)
    out = Path(args.out)
    if args.from_checkpoint:
        module = from_checkpoint(Path(args.from_checkpoint), config)
    else:
        module = train(examples, config, lambda n, m: torch_save(m, _checkpoint(out, n)))
    # Every pair a fit-half lookup meets at the floor, scored once, for the threshold sweep.
    fit_pairs = sorted(
        {(p.pair.query, p.pair.candidate) for p in labelled_pairs(workloads, vectors, FLOOR)}
    )
    fit_scores = dict(
        zip(fit_pairs, torch_scores(module, fit_pairs, config.max_tokens).tolist(), strict=True)
    )
    # Fit probes only: the threshold is chosen without looking at the held-back half.
    fit_only = {
        name: [Space(s.key, s.entries, [p for p in s.probes if p.fit]) for s in spaces]
        for name, spaces in workloads.items()
    }
    fit_only = {name: [s for s in spaces if s.probes] for name, spaces in fit_only.items()}
    chosen, curve = None, {}
    for threshold in THRESHOLDS:
        verifier = ScoreThreshold(lambda p: fit_scores[(p.query, p.candidate)], threshold, {})
        outcomes = {n: simulate(s, vectors, verifier, FLOOR) for n, s in fit_only.items()}
        fit = score(outcomes, fit=True)
        look, pooled = fit["lookalike"], fit["overall"]
        row = {"lookalike_served": look.false_hits / max(1, look.must_miss),
               "lookalike_hits": look.served_right / max(1, look.should_hit),
               "pooled_wrong": pooled.wrong_hits / max(1, pooled.hits),
               "pooled_hits": pooled.served_right / max(1, pooled.should_hit)}  # fmt: skip
        curve[threshold] = row
        print(threshold, {k: round(v, 3) for k, v in row.items()}, file=sys.stderr)
        # The look-alike goal alone picks the bar: no threshold reached the pooled one on the
        # fit half (benchmarks/README.md), so requiring both picked the top of the grid.
        if chosen is None and row["lookalike_served"] <= TARGET:
            chosen = threshold
    chosen = chosen if chosen is not None else THRESHOLDS[-1]
    meta = {
        "threshold": str(chosen),
        "min_similarity": str(FLOOR),
        "max_tokens": str(config.max_tokens),
        "target_wrong_rate": "0.02",
        "trained_on": {
            "examples": len(examples), "positives": int(positives), "layers": config.layers,
            "epochs": config.epochs, "floor": FLOOR, "fit_curve_at_threshold": curve[chosen],
            "command": "python -m benchmarks.lookalike_train " + " ".join(argv or sys.argv[1:]),
        },
    }  # fmt: skip
    path = export(module, Path(args.out), meta, quantize=not args.no_quantize)
    print(json.dumps({"path": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path),
                      "bytes": path.stat().st_size, "threshold": chosen,
                      "seconds": round(time.monotonic() - started)}))  # fmt: skip


if __name__ == "__main__":
    main()

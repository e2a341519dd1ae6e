"""MiniLM's fp32 and int8 ONNX exports side by side: speed, vector agreement, cache quality.

    python -m benchmarks.embedding_variants                 # speed and agreement
    python -m benchmarks.embedding_variants --pairs 2000    # + bare-cosine decisions on QQP
    python -m benchmarks.embedding_variants --quality       # + cache_quality.py --no-service

Speed: single texts and batches of 32 (QQP questions, one thread), the two sessions timed in
alternating rounds so that a busy machine slows both alike; the ratio is what counts.
Agreement: cosine between the two variants' vectors of the same text, and how often each
text's nearest neighbour among the others is the same one.
Pairs: labelled QQP pairs past the 5,000 cache_quality.py evaluates, each scored by both
variants' cosine; at each threshold, the share of duplicates served (hit rate), the share of
served pairs that are not duplicates (wrong rate), each with its binomial standard error, and
how many pairs change decision. A quick proxy, without the verifier.
Quality: benchmarks/cache_quality.py --no-service run once per variant, with the in-process
embedder swapped for the variant's session (`--as-variant`, a child process each), and the
held-back figures of both printed side by side.
The last line is one JSON object.

Measured 2026-12-07 (2-core machine, load average ~8 from other work; `--pairs 2000 --texts
400 --rounds 2`): int8 single 10.0 ms vs fp32 12.3 ms, batches of 32 51 vs 32 texts/s; cosine
to fp32 0.984 at worst, 0.993 on average, same nearest neighbour for 97% of texts. On 2,000
QQP pairs int8 served 1.6-2.7 points fewer duplicates at every threshold (0.90: 41.7% vs 44.3%,
standard error 1.8) with the same wrong rate (20.2% vs 20.5%): a consistent small loss of hits,
so fp32 stays the default; the full cache_quality run did not finish in the time available.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DEFAULT_DATA
from shared.embedding.minilm import MINILM_DIM, Vectors, embed_in_length_runs
from shared.embedding.onnx import (
    VARIANTS,
    OnnxMiniLmEmbedder,
    Variant,
    default_model_dir,
)

QUALITY_FIELDS = (
    "hit_rate_at_2pct_wrong",
    "wrong_hit_rate",
    "lookalike_wrong_rate",
    "lookalike_paraphrase_hit_rate",
)


def qqp_texts(data: Path, count: int) -> list[str]:
    rows = json.loads((data / "qqp-gptcache" / "similiar_qqp_full.json").read_text())
    texts = [t for r in rows for t in (r["text_a"], r["text_b"])]
    return [t.replace("\n", " ") for t in texts[:count]]


def loaded(variant: Variant) -> OnnxMiniLmEmbedder:
    embedder = OnnxMiniLmEmbedder(default_model_dir(os.environ), threads=1, variant=variant)
    embedder.load()
    return embedder


def speed(
    embedders: dict[str, OnnxMiniLmEmbedder], texts: list[str], rounds: int
) -> dict[str, Any]:
    single: dict[str, float] = dict.fromkeys(embedders, 0.0)
    batch: dict[str, float] = dict.fromkeys(embedders, 0.0)
    for _ in range(rounds):
        for name, embedder in embedders.items():
            started = time.perf_counter()
            for text in texts[:50]:
                embedder.embed([text])
            single[name] += time.perf_counter() - started
            started = time.perf_counter()
            for start in range(0, 128, 32):
                embedder.embed(texts[start : start + 32])
            batch[name] += time.perf_counter() - started
    return {
        name: {
            "single_ms": round(single[name] / (50 * rounds) * 1000, 2),
            "batch32_per_s": round(128 * rounds / batch[name], 1),
        }
        for name in embedders
    }


def agreement(a: Vectors, b: Vectors) -> dict[str, float]:
    cosines = (a * b).sum(axis=1)
    sim_a, sim_b = a @ a.T, b @ b.T
    np.fill_diagonal(sim_a, -1.0)
    np.fill_diagonal(sim_b, -1.0)
    return {
        "cosine_min": round(float(cosines.min()), 4),
        "cosine_mean": round(float(cosines.mean()), 4),
        "nearest_same": round(float((sim_a.argmax(1) == sim_b.argmax(1)).mean()), 4),
        "max_similarity_shift": round(float(np.abs(sim_a - sim_b).max()), 4),
    }


THRESHOLDS = (0.80, 0.85, 0.90)
# cache_quality.py evaluates the first 5,000 QQP rows; these come after them.
PAIRS_FROM = 5000


def pair_decisions(
    embedders: dict[str, OnnxMiniLmEmbedder], data: Path, count: int
) -> dict[str, Any]:
    rows = json.loads((data / "qqp-gptcache" / "similiar_qqp_full.json").read_text())
    rows = rows[PAIRS_FROM : PAIRS_FROM + count]
    labels = np.array([int(r["label"]) for r in rows], dtype=bool)
    cosines = {}
    for name, embedder in embedders.items():
        a = embed_in_length_runs(embedder.embed, [r["text_a"] for r in rows], 4, MINILM_DIM)
        b = embed_in_length_runs(embedder.embed, [r["text_b"] for r in rows], 4, MINILM_DIM)
        cosines[name] = (a * b).sum(axis=1)
    result: dict[str, Any] = {"pairs": len(rows), "duplicates": int(labels.sum())}
    for threshold in THRESHOLDS:
        served = {name: c >= threshold for name, c in cosines.items()}
        row: dict[str, Any] = {
            "changed": int((served["fp32"] != served["int8"]).sum()),
        }
        for name, hits in served.items():
            hit_rate = float(hits[labels].mean())
            wrong = float((~labels[hits]).mean()) if hits.any() else 0.0
            row[name] = {
                "hit_rate": round(hit_rate, 4),
                "hit_rate_se": round(_se(hit_rate, int(labels.sum())), 4),
                "wrong_rate": round(wrong, 4),
                "wrong_rate_se": round(_se(wrong, int(hits.sum())), 4),
            }
        result[f"{threshold:.2f}"] = row
    return result


def _se(rate: float, n: int) -> float:
    return float(np.sqrt(rate * (1 - rate) / max(1, n)))


def run_as_variant(variant: Variant, argv: Sequence[str]) -> None:
    """Runs cache_quality with its in-process MiniLM swapped for the variant's ONNX session."""
    from benchmarks import cache_quality
    from shared.embedding import minilm

    class VariantEmbedder(OnnxMiniLmEmbedder):
        def __init__(self, *, threads: int = 1) -> None:
            super().__init__(default_model_dir(os.environ), threads=threads, variant=variant)

    minilm.MiniLmEmbedder = VariantEmbedder  # type: ignore[misc,assignment]
    cache_quality.main(argv)


def quality(variant: Variant, data: Path, log_dir: Path) -> dict[str, Any]:
    log = log_dir / f"cache_quality_{variant}.log"
    command = [sys.executable, "-m", "benchmarks.embedding_variants", "--as-variant", variant]
    command += ["--", "--no-service", "--data", str(data)]
    with log.open("w") as sink:
        subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, check=True)
    last = log.read_text().strip().splitlines()[-1]
    figures: dict[str, Any] = json.loads(last)
    return {key: figures.get(key) for key in QUALITY_FIELDS}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--texts", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=0, help="QQP pairs to decide on")
    parser.add_argument("--quality", action="store_true")
    parser.add_argument("--log-dir", type=Path, default=Path(".sluice/bench"))
    parser.add_argument("--as-variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.as_variant:
        run_as_variant(args.as_variant, [a for a in rest if a != "--"])
        return
    texts = qqp_texts(args.data, args.texts)
    embedders: dict[str, OnnxMiniLmEmbedder] = {v: loaded(v) for v in VARIANTS}
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    timed = speed(embedders, texts, args.rounds)
    vectors = {name: e.embed(texts) for name, e in embedders.items()}
    agreed = agreement(vectors["fp32"], vectors["int8"])
    result: dict[str, Any] = {"speed": timed, "agreement": agreed}
    for name, figures in timed.items():
        print(f"{name}: {figures}")
    print(f"int8 vs fp32: {agreed}")
    if args.pairs:
        result["pairs"] = pair_decisions(embedders, args.data, args.pairs)
        for key, figures in result["pairs"].items():
            print(f"pairs {key}: {figures}")
    if args.quality:
        args.log_dir.mkdir(parents=True, exist_ok=True)
        result["quality"] = {v: quality(v, args.data, args.log_dir) for v in VARIANTS}
        for name, figures in result["quality"].items():
            print(f"cache quality, {name}: {figures}")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()

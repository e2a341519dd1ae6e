"""The cache's embedding batcher under concurrent lookups, old split against new, in one run.

    python -m benchmarks.embedding_batching [--concurrency 16] [--texts 480] [--rounds 3]

`concurrency` closed-loop callers each embed their next GPTCache paraphrase through one
EmbeddingBatcher over MiniLM on ONNX Runtime (one thread), as the cache's concurrent lookups
do. Two ways of running a batch alternate round by round, so a busy machine slows both alike:

- `runs`: length-sorted runs of 4 texts by characters, each in one call padded to its longest
  (the batcher and embedder before length_groups);
- `groups`: the calls `onnx.length_groups` plans by token count (the cache's embedder as it is).

Either way a batch's texts are all answered when it ends. Answering each call's texts as that
call ended was tried and reverted: it raised the p99 1.22x (245.9 against 201.3 ms, 3 rounds,
load average 4-8) for the same CPU, as the longest texts then wait at the back of every batch.

Per way: CPU ms per text (this process), texts/s, and the p50 and p99 of one embed's wait.
The last line is one JSON object with each way's median figures and their ratios to `runs`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.common import DEFAULT_DATA
from shared.embedding.minilm import MINILM_DIM, Embedder, EmbeddingBatcher, Vectors
from shared.embedding.onnx import (
    OnnxMiniLmEmbedder,
    default_model_dir,
    export_path,
    load_tokenizer,
    open_session,
)


class OneCallPerRun:
    """MiniLM as the batcher called it before length_groups: each run of 4 texts (the batcher's
    fallback for an embedder that does not plan its calls) in one call padded to its longest."""

    dim = MINILM_DIM
    loaded = True

    def __init__(self, model_dir: Path) -> None:
        self._session = open_session(export_path(model_dir), 1)
        self._tokenizer = load_tokenizer()

    def load(self) -> None:
        return None

    def embed(self, texts: Sequence[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(list(texts))
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)


async def closed_loop(embedder: Embedder, texts: list[str], concurrency: int) -> dict[str, float]:
    # No kept vectors: every text here is asked for once, as a lookup's question is.
    batcher = EmbeddingBatcher(embedder, kept=0)
    waits: list[float] = []
    queue = iter(texts)

    async def caller() -> None:
        for text in queue:
            started = time.perf_counter()
            await batcher.embed(text)
            waits.append(time.perf_counter() - started)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "cpu_ms_per_text": round(1000 * cpu / len(texts), 3),
        "texts_per_s": round(len(texts) / wall, 1),
        "p50_ms": round(1000 * float(np.percentile(waits, 50)), 1),
        "p99_ms": round(1000 * float(np.percentile(waits, 99)), 1),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--texts", type=int, default=480)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    mock = json.loads((args.data / "gptcache-mock-paraphrases" / "mock_data.json").read_text())
    texts = [str(row["similar"]) for row in mock][: args.texts]
    model_dir = default_model_dir(os.environ)
    onnx = OnnxMiniLmEmbedder(model_dir)
    onnx.load()
    ways: dict[str, Embedder] = {"runs": OneCallPerRun(model_dir), "groups": onnx}
    asyncio.run(closed_loop(onnx, texts[:32], args.concurrency))  # warm the session
    found: dict[str, list[dict[str, float]]] = {way: [] for way in ways}
    for round_ in range(args.rounds):
        for way, embedder in ways.items():
            figures = asyncio.run(closed_loop(embedder, texts, args.concurrency))
            found[way].append(figures)
            print(f"round {round_} {way:6s} {figures}  load {os.getloadavg()[0]:.1f}", flush=True)
    medians = {
        way: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        for way, rows in found.items()
    }
    ratios = {
        way: {key: round(medians[way][key] / medians["runs"][key], 3) for key in medians["runs"]}
        for way in ways
        if way != "runs"
    }
    print(json.dumps({"median": medians, "over_runs": ratios, "load": os.getloadavg()}))


if __name__ == "__main__":
    main()

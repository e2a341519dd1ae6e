"""Cache speed: lookup latency and store throughput by namespace size, flat vs HNSW side by side.

    .venv/bin/python benchmarks/cache_speed.py [--sizes 10000,100000,1000000] [--quick]

Each (size, index kind) case runs in a fresh subprocess, so its RSS is its own. A case fills
one namespace of a SemanticCache through the domain API's load path (the path a restart
takes: records with vectors, no embedding) with random unit vectors, lets the namespace settle
on its index kind (flat: exact search; hnsw: the background build), then times:

- lookups: semantic lookups whose query vector is a stored vector plus noise (cosine ~0.95,
  as for a paraphrase), through `SemanticCache.lookup` (keys, search, checks), with an
  embedder that returns the precomputed vector at once; `recall` is the share of lookups that
  found their own entry (flat is exact, so 1.0 by construction);
- stores: new entries through `SemanticCache.store` into a MemoryStore (index insert and
  bookkeeping, no I/O).

Separately it times the embedding itself (torch vs ONNX Runtime, one thread) and SQLite
persistence (synchronous NORMAL vs FULL, sequential and concurrent stores, and loading 100k
entries at start). HNSW at 1M is capped (not built): the graph (M=32) took ~0.6 ms per vector
to build on one thread at 100k here, so 1M would take over 10 minutes, beyond this benchmark's
budget; the output says so and extrapolates a lower bound from the largest HNSW case.

It also compares hit verification (cache_speed_verifier.py): the cross-encoder's cost per
lookup, and the semantic-hit p50 through the real service with the old default verifier and
the new one side by side, as a ratio (`--verifier-only` runs just that).

Prints a table, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "shared" / "gen")]

from services.cache.adaptive import IndexPolicy  # noqa: E402
from services.cache.cache import SemanticCache  # noqa: E402
from services.cache.index import limit_faiss_threads  # noqa: E402
from services.cache.model import CachePolicy, CacheRequest  # noqa: E402
from services.cache.records import CachedAnswer, EntryRecord  # noqa: E402
from services.cache.store import EntryStore, MemoryStore  # noqa: E402
from services.cache.store_sqlite import SqliteStore  # noqa: E402
from shared.chat import Role, Turn  # noqa: E402

DIM = 384
NOISE = 0.33  # |noise| ~ 0.33 gives cosine ~ 1 / sqrt(1 + 0.33^2) ~ 0.95 with the original
HNSW_CAP = 200_000  # sizes above this skip the HNSW build (see the module docstring)


class VectorEmbedder:
    """Returns precomputed vectors by text, or a random unit vector for new texts."""

    dim = DIM
    ready = True

    def __init__(self, rng: np.random.Generator) -> None:
        self.vectors: dict[str, np.ndarray] = {}
        self._rng = rng

    async def embed(self, text: str) -> np.ndarray:
        found = self.vectors.get(text)
        return found if found is not None else unit(self._rng, 1)[0]


def unit(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def request(text: str) -> CacheRequest:
    return CacheRequest("bench", "small", (Turn(Role.USER, text),))


def rss_mb() -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": ordered[len(ordered) // 2] * 1e3,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
    }


def new_cache(embedder: Any, store: EntryStore, threshold: int) -> SemanticCache:
    policy = CachePolicy(
        min_similarity=0.85,
        ttl_s=86_400 * 365,
        max_entries=10_000_000,
        max_bytes=1 << 42,
        index=IndexPolicy(ann_threshold=threshold),
    )
    return SemanticCache(embedder, policy, store=store)


def fill(store: MemoryStore, vectors: np.ndarray, namespace: str) -> None:
    """Puts records straight into the store, as a restart would find them."""
    now = time.time()
    answer = CachedAnswer("An answer of about this length, a sentence or two.", "bench-model")
    for row in range(len(vectors)):
        entry_id = f"{row:032x}"
        store.records[entry_id] = EntryRecord(
            entry_id=entry_id,
            tenant_id="bench",
            exact_key=f"{row:064x}",
            namespace=namespace,
            query=f"stored question {row}",
            answer=answer,
            created_at=now,
            expires_at=now + 86_400 * 365,
            vector=vectors[row],
        )


async def index_case(size: int, kind: str, lookups: int, stores: int) -> dict[str, Any]:
    limit_faiss_threads()
    rng = np.random.default_rng(7)
    embedder = VectorEmbedder(rng)
    namespace = _namespace_of(request("probe"))
    store = MemoryStore()
    vectors = unit(rng, size)
    fill(store, vectors, namespace)
    cache = new_cache(embedder, store, threshold=size - 1 if kind == "hnsw" else size * 10)
    started = time.perf_counter()
    await cache.start()
    loaded = time.perf_counter() - started
    await cache.settle()  # HNSW: the background build from the loaded flat index
    built = time.perf_counter() - started
    store.records.clear()  # the benchmark's copy; the cache keeps its own entries
    target = cache.namespace(namespace)
    assert target is not None and target.index.kind == kind, "namespace did not settle"
    picks = rng.choice(size, size=lookups, replace=False)
    for n, row in enumerate(picks):
        noisy = vectors[row] + NOISE * rng.standard_normal(DIM, dtype=np.float32) / np.sqrt(DIM)
        embedder.vectors[f"paraphrase {n}"] = noisy / np.linalg.norm(noisy)
    del vectors
    times, found = [], 0
    for n, row in enumerate(picks):
        began = time.perf_counter()
        result = await cache.lookup(request(f"paraphrase {n}"))
        times.append(time.perf_counter() - began)
        found += result.entry_id == f"{row:032x}"
    began = time.perf_counter()
    for n in range(stores):
        await cache.store(request(f"new question {n}"), CachedAnswer("new answer", "m"))
    store_s = time.perf_counter() - began
    rss, peak = rss_mb()
    return {
        "size": size,
        "kind": kind,
        **percentiles(times),
        "recall": found / lookups,
        "stores_per_s": stores / store_s,
        "load_s": loaded,
        "build_s": built - loaded,
        "rss_mb": rss,
        "peak_rss_mb": peak,
    }


def _namespace_of(probe: CacheRequest) -> str:
    from services.cache.model import keys_of

    return keys_of(probe).namespace


async def sqlite_case(path: Path, sync: str, count: int) -> dict[str, Any]:
    """Store latency and throughput through the cache with SQLite, then a 100k-entry load."""
    rng = np.random.default_rng(3)
    store = SqliteStore(path, sync=sync)  # type: ignore[arg-type]
    await store.open()
    cache = new_cache(VectorEmbedder(rng), store, threshold=20_000)
    await cache.start()
    answer = CachedAnswer("An answer of about this length, a sentence or two.", "m")
    latencies = []
    for n in range(count):
        began = time.perf_counter()
        await cache.store(request(f"sequential {n}"), answer)
        latencies.append(time.perf_counter() - began)
    began = time.perf_counter()
    for batch in range(count // 50):
        await asyncio.gather(
            *(cache.store(request(f"concurrent {batch} {n}"), answer) for n in range(50))
        )
    concurrent_s = time.perf_counter() - began
    await cache.aclose()
    return {
        "sync": sync,
        **percentiles(latencies),
        "sequential_per_s": count / sum(latencies),
        "concurrent_per_s": (count // 50) * 50 / concurrent_s,
        "commits": store.commits,
    }


async def load_case(path: Path, size: int) -> dict[str, Any]:
    """Time to open a SQLite store of `size` entries and load them into a cache."""
    rng = np.random.default_rng(5)
    store = SqliteStore(path)
    await store.open()
    vectors = unit(rng, size)
    memory = MemoryStore()
    fill(memory, vectors, _namespace_of(request("probe")))
    records = list(memory.records.values())
    for start in range(0, size, 1000):
        await asyncio.gather(*(store.put(record, None) for record in records[start : start + 1000]))
    await store.close()
    began = time.perf_counter()
    reopened = SqliteStore(path)
    await reopened.open()
    opened = time.perf_counter() - began
    cache = new_cache(VectorEmbedder(rng), reopened, threshold=size * 10)
    await cache.start()
    total = time.perf_counter() - began
    await cache.aclose()
    return {"size": size, "open_check_s": opened, "load_s": total, "entries": len(cache)}


def embed_case(count: int) -> dict[str, Any]:
    """Single-query latency and batch-32 throughput of torch and ONNX Runtime, one thread."""
    import os

    from services.cache.config import Settings
    from shared.embedding.minilm import Embedder, MiniLmEmbedder
    from shared.embedding.onnx import OnnxMiniLmEmbedder

    results: dict[str, Any] = {}
    backends: dict[str, Embedder] = {
        "torch": MiniLmEmbedder(),
        "onnx": OnnxMiniLmEmbedder(Settings.from_env(os.environ).model_dir),
    }
    for name, embedder in backends.items():
        embedder.load()
        for n in range(5):
            embedder.embed([f"warm up {n}"])
        times = []
        for n in range(count):
            began = time.perf_counter()
            embedder.embed([f"What is the capital of country number {n}?"])
            times.append(time.perf_counter() - began)
        batch = [f"What is the capital of country number {n}?" for n in range(32)]
        began = time.perf_counter()
        for _ in range(5):
            embedder.embed(batch)
        results[name] = {**percentiles(times), "batch32_per_s": 160 / (time.perf_counter() - began)}
    return results


def run_case(args: list[str]) -> dict[str, Any]:
    """Runs one case in a fresh interpreter and returns its JSON result."""
    done = subprocess.run(
        [sys.executable, __file__, "--case", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    if done.returncode != 0:
        raise RuntimeError(f"case {args} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def case_main(args: list[str]) -> None:
    kind, *rest = args
    if kind == "index":
        size, index_kind, lookups, stores = rest
        result = asyncio.run(index_case(int(size), index_kind, int(lookups), int(stores)))
    elif kind == "sqlite":
        path, sync, count = rest
        result = asyncio.run(sqlite_case(Path(path), sync, int(count)))
    elif kind == "load":
        path, size = rest
        result = asyncio.run(load_case(Path(path), int(size)))
    else:
        result = embed_case(int(rest[0]))
    print(json.dumps(result))


def table(index: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| entries | index | lookup p50 | lookup p99 | recall | stores/s | build | RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in index:
        lines.append(
            f"| {row['size']:,} | {row['kind']} | {row['p50_ms']:.2f} ms | {row['p99_ms']:.2f} ms "
            f"| {row['recall']:.3f} | {row['stores_per_s']:,.0f} | {row['build_s']:.1f} s "
            f"| {row['rss_mb']:,.0f} MB |"
        )
    return lines


def ratios(index: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(row["size"], row["kind"]): row for row in index}
    out = []
    for size in sorted({row["size"] for row in index}):
        flat, hnsw = by.get((size, "flat")), by.get((size, "hnsw"))
        if flat and hnsw:
            out.append(
                {
                    "size": size,
                    "p50": hnsw["p50_ms"] / flat["p50_ms"],
                    "p99": hnsw["p99_ms"] / flat["p99_ms"],
                    "stores": hnsw["stores_per_s"] / flat["stores_per_s"],
                    "rss": hnsw["rss_mb"] / flat["rss_mb"],
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    parser.add_argument("--verifier-only", action="store_true", help="only the verifier rows")
    parser.add_argument("--case", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.case:
        case_main(options.case)
        return
    from benchmarks.cache_speed_verifier import report as verifier_report
    from benchmarks.cache_speed_verifier import verifier_speed

    verifier = verifier_speed(options.quick)
    print("\n".join(verifier_report(verifier)), flush=True)
    if options.verifier_only:
        print(json.dumps({"verifier": verifier}))
        return
    lookups, stores, writes = (100, 200, 200) if options.quick else (1000, 2000, 1000)
    started = time.perf_counter()
    index = []
    for size in (int(s) for s in options.sizes.split(",")):
        kinds = ("flat", "hnsw") if size <= HNSW_CAP else ("flat",)
        for kind in kinds:
            count = min(lookups, 200) if (kind == "flat" and size >= 1_000_000) else lookups
            index.append(run_case(["index", str(size), kind, str(count), str(stores)]))
            print(f"  {size:,} {kind}: done at {time.perf_counter() - started:.0f}s", flush=True)
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        sqlite = [
            run_case(["sqlite", f"{scratch}/{sync}.db", sync, str(writes)])
            for sync in ("normal", "full")
        ]
        load = run_case(["load", f"{scratch}/load.db", "20000" if options.quick else "100000"])
    embed = run_case(["embed", "50" if options.quick else "300"])
    report(index, sqlite, load, embed, time.perf_counter() - started, verifier)


def report(
    index: list[Any], sqlite: list[Any], load: Any, embed: Any, elapsed: float, verifier: Any
) -> None:
    print("\n".join(["", *table(index)]))
    for ratio in ratios(index):
        print(
            f"{ratio['size']:,} entries, HNSW / flat: lookup p50 x{ratio['p50']:.2f}, "
            f"p99 x{ratio['p99']:.2f}, stores/s x{ratio['stores']:.2f}, RSS x{ratio['rss']:.2f}"
        )
    capped = [row["size"] for row in index if row["size"] > HNSW_CAP]
    hnsw = [row for row in index if row["kind"] == "hnsw"]
    if capped and hnsw:
        per_vector = hnsw[-1]["build_s"] / hnsw[-1]["size"]
        print(
            f"HNSW capped at {HNSW_CAP:,}: not built for {capped}; at the measured "
            f"{per_vector * 1e6:.0f} us/vector a 1M build would take at least "
            f"{per_vector * 1e6:.0f} s (cost per vector grows with the graph)"
        )
    for row in sqlite:
        print(
            f"SQLite synchronous={row['sync'].upper()}: store p50 {row['p50_ms']:.2f} ms, "
            f"p99 {row['p99_ms']:.2f} ms, {row['sequential_per_s']:,.0f}/s sequential, "
            f"{row['concurrent_per_s']:,.0f}/s with 50 concurrent"
        )
    print(
        f"Start-up with {load['size']:,} stored entries: open + quick_check "
        f"{load['open_check_s']:.2f} s, loaded and indexed in {load['load_s']:.2f} s"
    )
    for name, row in embed.items():
        print(
            f"Embedding ({name}, 1 thread): single query p50 {row['p50_ms']:.1f} ms, "
            f"p99 {row['p99_ms']:.1f} ms; batches of 32: {row['batch32_per_s']:.0f} sentences/s"
        )
    print(f"(total {elapsed:.0f} s)")
    summary = {"index": index, "ratios": ratios(index), "sqlite": sqlite, "load": load}
    print(json.dumps({**summary, "embed": embed, "verifier": verifier, "elapsed_s": elapsed}))


if __name__ == "__main__":
    main()

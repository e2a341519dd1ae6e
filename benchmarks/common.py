"""Helpers shared by benchmarks: deterministic splits, embeddings, a service subprocess, tables.

Benchmarks run the real service processes (`python -m services.<name>`) on loopback, exactly as
a pod runs them, and talk to them through the generated gRPC stubs.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc
from sluice.common.v1 import common_pb2

from services.cache.verifiers.replay import HEADLINE_DATASETS, Outcome, Probe, Score, Space
from shared.mesh import free_port, grpc_serving

Results = dict[str, list[Outcome]]
REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"
# The cache imports sentence-transformers (~5 s) and loads MiniLM before it turns SERVING; a
# busy 2-core machine can take several times that.
SERVICE_START_TIMEOUT_S = 180.0


def bucket(text: str) -> int:
    """0-9 from the SHA-1 of the text: a split that is stable across runs and machines."""
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16) % 10


def is_fit(text: str) -> bool:
    """The fit half (buckets 0-4) trains and tunes; the rest is held back for reporting."""
    return bucket(text) < 5


def hash_order(text: str) -> str:
    """Sort key for deterministic subsampling: take the first n items by hash."""
    return hashlib.sha1(("order:" + text).encode("utf-8")).hexdigest()


def embed(texts: Sequence[str], cache_path: Path | None = None) -> dict[str, NDArray[np.float32]]:
    """MiniLM vectors (the service's own embedder class), optionally cached in an .npz file."""
    cached: dict[str, NDArray[np.float32]] = {}
    if cache_path is not None and cache_path.exists():
        with np.load(cache_path, allow_pickle=False) as archive:
            cached = dict(zip(archive["texts"].tolist(), archive["vectors"], strict=True))
    missing = sorted({t for t in texts if t not in cached})
    if missing:
        from shared.embedding.minilm import MiniLmEmbedder

        embedder = MiniLmEmbedder(threads=min(2, os.cpu_count() or 1))
        embedder.load()
        started = time.monotonic()
        for start in range(0, len(missing), 128):
            chunk = missing[start : start + 128]
            cached.update(zip(chunk, embedder.embed(chunk), strict=True))
        rate = len(missing) / max(1e-9, time.monotonic() - started)
        print(f"embedded {len(missing)} texts in-process ({rate:.0f}/s)", file=sys.stderr)
        if cache_path is not None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            keys = sorted(cached)
            np.savez(
                cache_path, texts=np.asarray(keys), vectors=np.stack([cached[k] for k in keys])
            )
    return {t: cached[t] for t in texts}


@contextmanager
def running_service(
    name: str, env: Mapping[str, str], *, repo: Path = REPO, log_path: Path
) -> Iterator[str]:
    """Starts `python -m services.<name>` on a free loopback port; yields its address."""
    address = f"127.0.0.1:{free_port()}"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "OTEL_"))}
    child_env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    child_env.update(env)
    child_env[f"SLUICE_{name.upper()}_LISTEN"] = address
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            cwd=repo,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_serving(process, address, log_path)
        yield address
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within timeout_s."""
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_serving(process: subprocess.Popen[bytes], address: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVICE_START_TIMEOUT_S
    while not grpc_serving(address):
        if process.poll() is not None:
            raise RuntimeError(f"service exited with {process.returncode}:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"service at {address} not SERVING after {SERVICE_START_TIMEOUT_S}s")
        time.sleep(0.3)


# --- replaying cache workloads through the running service


async def _through_service(address: str, spaces: Sequence[Space], run: str) -> list[Outcome]:
    """Stores every entry, then looks every probe up; one tenant per namespace."""
    limit = asyncio.Semaphore(48)  # enough in flight for the service's 32-text embedding batches

    def messages(text: str) -> list[common_pb2.ChatMessage]:
        return [common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)]

    def context(space: Space) -> common_pb2.RequestContext:
        return common_pb2.RequestContext(tenant_id=f"{run}-{space.key}")

    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.SemanticCacheServiceStub(channel)

        async def store(space: Space, text: str, label: str) -> None:
            async with limit:
                await stub.Store(
                    pb.StoreRequest(
                        context=context(space),
                        model_class="bench",
                        messages=messages(text),
                        content=label,
                        model="bench",
                    ),
                    timeout=60,
                )

        async def lookup(space: Space, probe: Probe) -> Outcome:
            async with limit:
                reply = await stub.Lookup(
                    pb.LookupRequest(
                        context=context(space),
                        model_class="bench",
                        messages=messages(probe.text),
                        allow_semantic=True,
                    ),
                    timeout=60,
                )
            hit = reply.kind != pb.HIT_KIND_MISS
            return Outcome(probe, reply.content if hit else None, reply.similarity)

        await asyncio.gather(*(store(s, t, a) for s in spaces for t, a in s.entries.items()))
        return list(await asyncio.gather(*(lookup(s, p) for s in spaces for p in s.probes)))


def through_service(
    workloads: Mapping[str, Sequence[Space]],
    verify: str,
    min_similarity: float,
    args: Any,
    extra_env: Mapping[str, str] | None = None,
) -> Results:
    """Runs every workload through a fresh `python -m services.cache` (args.service_repo)."""
    env = {
        "SLUICE_CACHE_MIN_SIMILARITY": str(min_similarity),
        "SLUICE_CACHE_VERIFY": verify,
        "SLUICE_CACHE_MAX_ENTRIES": "100000",
        "SLUICE_CACHE_STORE": "memory://",
        **(extra_env or {}),
    }
    log = Path(args.log_dir) / f"cache-{verify}.log"
    with running_service("cache", env, repo=Path(args.service_repo), log_path=log) as address:
        started = time.monotonic()
        results = {
            name: asyncio.run(_through_service(address, spaces, f"{verify}-{name}"))
            for name, spaces in workloads.items()
        }
        print(f"service run verify={verify}: {time.monotonic() - started:.0f}s", file=sys.stderr)
    return results


# --- scoring ----------------------------------------------------------------------------------


def raise_threshold(outcomes: Results, threshold: float) -> Results:
    return {
        name: [o if o.similarity >= threshold else replace(o, served=None) for o in items]
        for name, items in outcomes.items()
    }


def agreement(a: Results, b: Results) -> float:
    pairs = [(x.served, y.served) for n in a for x, y in zip(a[n], b[n], strict=True)]
    return sum(x == y for x, y in pairs) / max(1, len(pairs))


def table_row(label: str, source: str, scores: dict[str, Score]) -> list[str]:
    cells = [label, source]
    for name in ("overall", *HEADLINE_DATASETS):
        s = scores.get(name, Score())
        cells += [percent(s.served_right, s.should_hit), percent(s.wrong_hits, s.hits)]
    qqp, clinc = scores.get("qqp", Score()), scores.get("clinc150", Score())
    mock = scores.get("mock", Score())
    cells += [
        percent(qqp.false_hits, qqp.must_miss),
        percent(clinc.false_hits, clinc.must_miss),
        percent(mock.served_right, mock.should_hit),
    ]
    return cells


TABLE_HEADERS = (
    "cache", "via",
    "all: hit", "all: wrong", "QQP: dup hit", "QQP: wrong", "B77: hit", "B77: wrong",
    "CLINC: hit", "CLINC: wrong", "QQP non-dup false hit", "CLINC oos false hit",
    "GPTCache paraphrases hit",
)  # fmt: skip


def workload_sizes(workloads: Mapping[str, Sequence[Space]]) -> str:
    lines = ["## Sizes"]
    for name, spaces in workloads.items():
        probes = [p for s in spaces for p in s.probes]
        stored = sum(len(s.entries) for s in spaces)
        held = sum(not p.fit for p in probes)
        must_miss = sum(p.expected is None for p in probes)
        lines.append(
            f"- {name}: {len(spaces)} namespace(s), {stored} stored, {len(probes)} lookups "
            f"({held} held back, {must_miss} must miss)"
        )
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def percent(numerator: int, denominator: int) -> str:
    return f"{100 * numerator / denominator:.1f}%" if denominator else "n/a"

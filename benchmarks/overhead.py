"""Mesh overhead and throughput, side by side with LiteLLM's proxy (issue #8).

    python -m benchmarks.overhead [--data ../shared/data] [--quick] [--requests N]

Starts the whole mesh (`python -m services.<name>` for every service and the simulator, as
`sluice up` does) and LiteLLM's proxy in a venv of its own, both pointed at the same simulator
with zero added latency (SLUICE_SIMULATOR_LATENCY_SCALE=0). The same prompts are then sent at
each concurrency on three paths:

- miss: unique prompts (QQP questions), so every request goes upstream. LiteLLM runs with its
  default settings and no cache; Sluice runs its whole path (cache lookup, cascade through the
  batcher and dispatcher, cache store).
- exact: prompts answered once before, asked again word for word. LiteLLM uses its in-memory
  (`type: local`) cache, the only one it has without Redis.
- semantic: GPTCache's paraphrase pairs; the originals are asked first, then the paraphrases.
  LiteLLM's semantic caches need Redis or Qdrant and an embedding API, so it is n/a there.

Added latency is what the client measured minus the upstream's own time: the median latency of
the same requests sent straight to the simulator at concurrency 1 in the same run (on a hit
nothing goes upstream, so the whole latency is added). The miss path is run in two passes, each
interleaving every target, and the ratios to LiteLLM are the worse pass's, since LiteLLM's tail
swings from run to run. The mesh's summed RSS (without the simulator) is read after the run. The
last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import itertools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import grpc
import httpx

from benchmarks.common import DEFAULT_DATA, hash_order
from benchmarks.overhead_http import KeepAliveClient
from benchmarks.overhead_litellm import (
    DEFAULT_VENV,
    MASTER_KEY,
    ensure_venv,
    litellm_version,
    proxy_config,
    running_litellm,
)
from benchmarks.overhead_load import (
    UPSTREAM_MODEL,
    RunResult,
    Send,
    closed_loop,
    grpc_sender,
    openai_sender,
    upstream_received,
)
from benchmarks.overhead_procs import gateway_rss_mb, mesh_rss
from benchmarks.overhead_report import report, run_conditions, summary
from shared.mesh import Mesh, free_ports
from shared.otlp_receiver import OtlpReceiver

SLUICE_KEY = "dev"
PATHS = ("miss", "exact", "semantic")
# Each run is split into this many parts, interleaved with the other targets' parts.
ROUNDS = 3
# The miss path is measured this many times over, the worse pass's ratios reported.
MISS_PASSES = 2


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--requests", type=int, default=600, help="measured requests per run")
    parser.add_argument("--quick", action="store_true", help="150 requests per run")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--log-dir", type=Path, default=None)
    parser.add_argument("--litellm-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--no-litellm", action="store_true", help="measure Sluice only")
    parser.add_argument("--traces", action="store_true", help="export spans to a receiver")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests = min(args.requests, 150)
    args.levels = sorted({int(c) for c in args.concurrency.split(",")} | {1})
    return args


class Prompts:
    """Disjoint slices of real questions, and paraphrase pairs, in a fixed hash order."""

    def __init__(self, data: Path) -> None:
        pairs = json.loads((data / "qqp-gptcache" / "similiar_qqp_full.json").read_text())
        # One side of each pair only: the two sides of a duplicate pair would hit each other.
        questions = {str(p["text_a"]).strip() for p in pairs}
        self._questions = iter(sorted((q for q in questions if len(q) > 20), key=hash_order))
        mock = json.loads((data / "gptcache-mock-paraphrases" / "mock_data.json").read_text())
        self.paraphrases = [(str(p["origin"]), str(p["similar"])) for p in mock]

    def take(self, n: int) -> list[str]:
        taken = list(itertools.islice(self._questions, n))
        if len(taken) < n:
            raise ValueError(f"the data has too few questions for {n} more unique prompts")
        return taken


@contextmanager
def running_mesh(
    log_dir: Path, traces: bool, receiver: OtlpReceiver | None = None
) -> Iterator[Mesh]:
    """The whole mesh on free ports; with traces, its spans go to `receiver` (one is started
    when none is given)."""
    env = {
        "SLUICE_SIMULATOR_LATENCY_SCALE": "0",
        "SLUICE_CACHE_DATA_DIR": str(log_dir / "cache"),
        "SLUICE_BATCHER_DATA_DIR": str(log_dir / "batcher"),
        "SLUICE_SHUTDOWN_ANNOUNCE_S": "0.3",
        "SLUICE_LOG_LEVEL": "WARNING",
    }
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("OTEL_")}
    with ExitStack() as stack:
        if traces:
            if receiver is None:
                receiver = OtlpReceiver().start()
                stack.callback(receiver.stop)
            env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
            env |= {"OTEL_EXPORTER_OTLP_INSECURE": "true"}
        mesh = Mesh.plan(free_ports(), log_dir, env)
        os.environ.update(saved)
        try:
            mesh.start_all()
            mesh.wait_ready(timeout_s=300)
            yield mesh
        finally:
            mesh.stop_all()


@contextmanager
def mesh_from(checkout: Path | None, log_dir: Path) -> Iterator[Mesh]:
    """running_mesh as `checkout` runs it (None: this one): services start with `python -m`,
    which puts the working directory first on their path, so they import that checkout's
    code; the working directory is back as soon as they have started."""
    if checkout is None:
        with running_mesh(log_dir, traces=False) as mesh:
            yield mesh
        return
    here = os.getcwd()
    os.chdir(checkout)
    try:
        with running_mesh(log_dir, traces=False) as mesh:
            os.chdir(here)
            yield mesh
    finally:
        os.chdir(here)


class Bench:
    """Runs targets against prompt lists and keeps every result by (path, target, c)."""

    def __init__(self, mesh: Mesh, requests: int) -> None:
        self.mesh = mesh
        self.requests = requests
        self.simulator = f"http://{mesh.address('simulator')}"
        self.results: dict[tuple[str, str, int], RunResult] = {}
        # LiteLLM proxies by target name ("litellm", "litellm-cache") -> base URL.
        self.litellm: dict[str, str] = {}
        self._stats = httpx.Client()

    def run(
        self,
        path: str,
        target: str,
        c: int,
        prompts: list[str],
        warm: list[str],
        kind: str | None = None,
        also: str | None = None,
    ) -> None:
        """Warms the target's connections with `warm`, then measures `prompts`; a second run
        of the same (path, target, c) adds to the first. With `also`, the run is kept under
        that path too (one pass of a path run twice)."""
        result = asyncio.run(self._run(target, c, prompts, warm))
        result.kind = kind
        for key in (path, also) if also else (path,):
            earlier = self.results.get((key, target, c))
            if earlier is None:
                self.results[(key, target, c)] = copy.deepcopy(result)
            else:
                earlier.merge(result)

    def show(self, path: str, target: str, c: int) -> None:
        result = self.results[(path, target, c)]
        kinds = ", ".join(f"{k or 'n/a'}={v}" for k, v in sorted(result.kinds.items()))
        print(
            f"  {path:8s} {target:13s} c={c:<3d} p50 {result.percentile_ms(50):7.2f} ms  "
            f"p99 {result.percentile_ms(99):7.2f} ms  {result.rps:7.1f} req/s  "
            f"errors {result.errors}  upstream calls {result.upstream_calls}  [{kinds}]"
            + (f"  first error: {result.first_error}" if result.first_error else ""),
            file=sys.stderr,
            flush=True,
        )

    def rounds(
        self,
        path: str,
        c: int,
        work: dict[str, tuple[list[str], list[str]]],
        also: str | None = None,
    ) -> None:
        """Runs every target on its (prompts, warm) in ROUNDS interleaved parts, the order
        rotating each round, so that load from outside the benchmark falls on all alike."""
        targets = list(work)
        for r in range(ROUNDS):
            for target in targets[r % len(targets) :] + targets[: r % len(targets)]:
                prompts, warm = work[target]
                self.run(path, target, c, prompts[r::ROUNDS], warm[r::ROUNDS], also=also)
        for target in targets:
            self.show(also or path, target, c)

    async def _run(self, target: str, c: int, prompts: list[str], warm: list[str]) -> RunResult:
        async with self._sender(target, c) as send:
            await closed_loop(send, warm, c)
            before = upstream_received(self._stats, self.simulator)
            result = await closed_loop(send, prompts, c)
            result.upstream_calls = upstream_received(self._stats, self.simulator) - before
            return result

    @asynccontextmanager
    async def _sender(self, target: str, c: int) -> AsyncIterator[Send]:
        if target == "sluice-grpc":
            async with grpc.aio.insecure_channel(self.mesh.address("router")) as channel:
                yield grpc_sender(channel, SLUICE_KEY)
            return
        path = "/v1/chat/completions"
        if target == "sluice-http":
            client = KeepAliveClient(f"http://{self.mesh.address('router_http')}", c)
            send = openai_sender(client, path, SLUICE_KEY, "auto", sluice=True)
        elif target == "direct":
            client = KeepAliveClient(self.simulator, c)
            send = openai_sender(client, "/us-east" + path, "unused", UPSTREAM_MODEL, sluice=False)
        else:
            client = KeepAliveClient(self.litellm[target], c)
            send = openai_sender(client, path, MASTER_KEY, UPSTREAM_MODEL, sluice=False)
        try:
            yield send
        finally:
            await client.aclose()

    def seed(self, target: str, prompts: list[str]) -> None:
        """Asks each prompt once, so that the cache holds its answer."""
        asyncio.run(self._run(target, 16, prompts, []))


def cycled(prompts: list[str], n: int) -> list[str]:
    return list(itertools.islice(itertools.cycle(prompts), n))


def warm_size(requests: int) -> int:
    return max(16, min(100, requests // 5))


def miss_phase(bench: Bench, prompts: Prompts, levels: list[int]) -> None:
    """Unique prompts; direct, LiteLLM and Sluice's HTTP door get the very same ones. Each
    concurrency is run in MISS_PASSES passes, each interleaving all targets and kept apart too
    ("miss/0", "miss/1"), since LiteLLM's tail swings from run to run: the summary reports the
    worse pass's ratios."""
    print("miss path (unique prompts)", file=sys.stderr)
    n, w = bench.requests, warm_size(bench.requests)
    for c in levels:
        for one in range(MISS_PASSES):
            shared = (prompts.take(n), prompts.take(w))
            work = {"direct": shared}
            if "litellm" in bench.litellm:
                work["litellm"] = shared
            work["sluice-http"] = shared
            # Sluice's cache keeps what the HTTP run stored, so gRPC needs prompts of its own.
            work["sluice-grpc"] = (prompts.take(n), prompts.take(w))
            bench.rounds("miss", c, work, also=f"miss/{one}")


def exact_phase(bench: Bench, prompts: Prompts, levels: list[int]) -> None:
    """Prompts answered once, then asked again word for word."""
    print("exact-hit path", file=sys.stderr)
    seeds = min(200, bench.requests)
    http_seeds = prompts.take(seeds)
    seeded = {"sluice-http": http_seeds, "sluice-grpc": prompts.take(seeds)}
    if "litellm-cache" in bench.litellm:
        seeded["litellm-cache"] = http_seeds
    for target, items in seeded.items():
        bench.seed(target, items)
    for c in levels:
        work = {
            t: (cycled(items, bench.requests), items[: 16 * ROUNDS]) for t, items in seeded.items()
        }
        bench.rounds("exact", c, work)


def semantic_phase(bench: Bench, prompts: Prompts, levels: list[int]) -> None:
    """Originals asked first (and stored), then their paraphrases, each paraphrase once only:
    the cache keeps a query's vector until its Store takes it, and repeating a paraphrase would
    measure that instead of an embedding. Figures are over the semantic hits; paraphrases the
    cache does not match go upstream and are counted apart."""
    print("semantic-hit path", file=sys.stderr)
    size = min(bench.requests, len(prompts.paraphrases) // len(levels))
    pairs = sorted(prompts.paraphrases, key=lambda p: hash_order(p[0]))[: size * len(levels)]
    bench.seed("sluice-http", [origin for origin, _ in pairs])
    for index, c in enumerate(levels):
        part = [similar for _, similar in pairs[index * size : (index + 1) * size]]
        bench.run("semantic", "sluice-http", c, part, [], kind="semantic")
        bench.show("semantic", "sluice-http", c)


def start_litellm(
    stack: ExitStack, bench: Bench, args: argparse.Namespace, log_dir: Path, cache: bool
) -> None:
    """Starts a LiteLLM proxy for the next phase; a failure is reported, not fatal."""
    name = "litellm-cache" if cache else "litellm"
    try:
        executable = ensure_venv(args.litellm_venv)
        upstream = f"{bench.simulator}/us-east/v1"
        config = proxy_config(UPSTREAM_MODEL, upstream, cache=cache)
        bench.litellm[name] = stack.enter_context(
            running_litellm(executable, config, log_dir / "litellm", name)
        )
    except (OSError, RuntimeError, TimeoutError, subprocess.CalledProcessError) as error:
        print(f"LiteLLM ({name}) not measured: {error}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        prompts = Prompts(args.data)
    except FileNotFoundError as error:
        raise SystemExit(f"--data {args.data}: {error.filename} not found") from None
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="sluice-overhead-"))
    conditions = run_conditions(args)
    print(f"logs in {log_dir}; {conditions}", file=sys.stderr)
    with running_mesh(log_dir, args.traces) as mesh:
        bench = Bench(mesh, args.requests)
        with ExitStack() as stack:
            if not args.no_litellm:
                start_litellm(stack, bench, args, log_dir, cache=False)
            miss_phase(bench, prompts, args.levels)
        with ExitStack() as stack:
            if not args.no_litellm:
                start_litellm(stack, bench, args, log_dir, cache=True)
            exact_phase(bench, prompts, args.levels)
        semantic_phase(bench, prompts, args.levels)
        rss = mesh_rss(mesh)
    conditions["load_after"] = os.getloadavg()
    conditions["rss_mb_by_process"] = rss
    if not args.no_litellm:
        conditions["litellm_version"] = litellm_version(args.litellm_venv)
    print(report(bench.results, args.levels))
    figures = summary(
        bench.results, args.levels, conditions, MISS_PASSES, mesh_rss_mb=gateway_rss_mb(rss)
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

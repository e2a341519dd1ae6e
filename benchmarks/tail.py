"""Chaos benchmark for the dispatcher: a slow tail in one region, an outage in another.

    python -m benchmarks.tail [--rate 25] [--seconds 40] [--seed 1]

It starts the provider simulator on loopback and sends one open-loop workload (Poisson
arrivals, callers split evenly between us-east and eu-west) through three dispatchers side by
side: every arrival is sent to all three at the same moment, so a stall of this shared machine,
the outage and the warm-up hit them alike.

- us-east (A) has a slow tail: 5% of answers take 10x longer (the simulator's slow_rate and
  slow_factor), the case "The Tail at Scale" (Dean and Barroso, CACM 2013) is about;
- eu-west (B) is fully down (503) from 30% to 60% of the measured stretch;
- ap-south (C) is healthy and a little slower than both.

The modes: `single-region` (each caller uses only its own region's endpoint), `failover`
(every region, ejection, retries under the retry budget, no hedging) and `failover+hedging`
(the default dispatcher). For each it prints p50/p99/p99.9 of the whole-answer latency the
caller saw, failed requests, and extra upstream calls (HTTP calls the mode's client made beyond
one per request) as a ratio of requests. The last line is one JSON object for machines.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace import TracerProvider

from services.dispatcher.calls import ModelRequest
from services.dispatcher.dispatcher import Dispatcher, DispatchPolicy
from services.dispatcher.endpoints import Endpoint, parse_endpoints
from services.dispatcher.providers.openai import OpenAICompatibleClient
from shared.chat import Role, Sampling, Turn
from shared.errors import SluiceError
from shared.mesh import Mesh, free_ports
from shared.pricing import load_catalogue
from shared.tokens import TokenCounter

MODEL = "Qwen/Qwen3-8B"
REGIONS = ("us-east", "eu-west", "ap-south")
CALLER_REGIONS = ("us-east", "eu-west")
LATENCY = {
    "us-east": {"ttft_median_ms": 40, "ttft_p99_ms": 80, "per_token_ms": 0.5},
    "eu-west": {"ttft_median_ms": 50, "ttft_p99_ms": 100, "per_token_ms": 0.5},
    "ap-south": {"ttft_median_ms": 70, "ttft_p99_ms": 140, "per_token_ms": 0.5},
}
SLOW_TAIL = {"slow_rate": 0.05, "slow_factor": 10}
# Unmeasured lead-in: the hedging dispatcher needs latency samples and hedge tokens before it
# may hedge; every mode gets the same lead-in.
WARMUP_S = 3.0
OUTAGE = (0.3, 0.6)


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts the HTTP calls a mode makes upstream: its own extra calls, exactly."""

    def __init__(self) -> None:
        self.calls = 0
        self._inner = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class Mode:
    name: str
    # Which dispatcher a caller in this region uses.
    route: Callable[[str], Dispatcher]
    dispatchers: list[Dispatcher]
    transport: CountingTransport
    latencies_s: list[float] = field(default_factory=list)
    failed: int = 0
    measured: int = 0
    requests: int = 0

    def hedges(self) -> int:
        return sum(d.budgets.totals["hedges"] for d in self.dispatchers)

    def percentile_ms(self, q: float) -> float:
        """Nearest rank over the answered measured requests (failures are counted apart)."""
        ordered = sorted(self.latencies_s)
        rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1] * 1000

    @property
    def extra_calls_ratio(self) -> float:
        return (self.transport.calls - self.requests) / self.requests

    async def send(self, index: int, region: str, measured: bool) -> None:
        call = ModelRequest(
            MODEL,
            (Turn(Role.USER, f"Summarise request {index} in one line."),),
            Sampling(max_tokens=16),
            region,
        )
        self.requests += 1
        self.measured += measured
        sent = time.monotonic()
        try:
            await self.route(region).dispatch(call, sent + 30)
        except SluiceError:
            self.failed += measured
            return
        if measured:
            self.latencies_s.append(time.monotonic() - sent)


@dataclass
class Simulator:
    url: str

    def prepare(self) -> None:
        httpx.post(f"{self.url}/admin/reset", timeout=5).raise_for_status()
        for region, latency in LATENCY.items():
            self.patch(region, **latency)
        self.patch("us-east", **SLOW_TAIL)

    def patch(self, region: str, **fields: Any) -> None:
        httpx.post(f"{self.url}/admin/regions/{region}", json=fields, timeout=5).raise_for_status()


@contextmanager
def simulator_process(seed: int) -> Iterator[Simulator]:
    log_dir = Path(tempfile.mkdtemp(prefix="sluice-tail-"))
    mesh = Mesh.plan(free_ports(), log_dir, {"SLUICE_SIMULATOR_SEED": str(seed)})
    mesh.start("simulator")
    try:
        mesh.wait_ready(("simulator",), timeout_s=60)
        yield Simulator(f"http://{mesh.address('simulator')}")
    finally:
        mesh.stop_all()


def endpoints(simulator: Simulator, regions: tuple[str, ...]) -> tuple[Endpoint, ...]:
    rows = [
        f"  - {{name: sim-{r}, region: {r}, base_url: '{simulator.url}/{r}/v1', models: [{MODEL}]}}"
        for r in regions
    ]
    return parse_endpoints("endpoints:\n" + "\n".join(rows) + "\n", {})


def make_modes(simulator: Simulator, tokens: TokenCounter, seed: int) -> list[Mode]:
    def dispatcher(
        transport: CountingTransport, regions: tuple[str, ...] = REGIONS, **changes: Any
    ) -> Dispatcher:
        policy = DispatchPolicy(local_region="us-east", attempt_timeout_s=10)
        return Dispatcher(
            endpoints(simulator, regions),
            OpenAICompatibleClient(httpx.AsyncClient(transport=transport), tokens, env={}),
            load_catalogue(),
            TracerProvider().get_tracer("benchmark"),
            dataclasses.replace(policy, **changes),
            rng=random.Random(seed),
        )

    single, failover, hedged = CountingTransport(), CountingTransport(), CountingTransport()
    # Single region: each caller's own region only, so there is nothing to fail over to.
    own = {r: dispatcher(single, (r,), hedging=False) for r in CALLER_REGIONS}
    without = dispatcher(failover, hedging=False)
    default = dispatcher(hedged)
    return [
        Mode("single-region", lambda region: own[region], list(own.values()), single),
        Mode("failover", lambda region: without, [without], failover),
        Mode("failover+hedging", lambda region: default, [default], hedged),
    ]


async def outage(simulator: Simulator, down_at: float, up_at: float) -> None:
    """Takes eu-west fully down for [down_at, up_at) (monotonic times)."""
    patch = f"{simulator.url}/admin/regions/eu-west"
    async with httpx.AsyncClient(timeout=5) as http:
        await asyncio.sleep(down_at - time.monotonic())
        (await http.post(patch, json={"outage": True})).raise_for_status()
        await asyncio.sleep(up_at - time.monotonic())
        (await http.post(patch, json={"outage": False})).raise_for_status()


async def run(modes: list[Mode], simulator: Simulator, args: argparse.Namespace) -> None:
    """Open-loop Poisson arrivals; each arrival goes to every mode at once."""
    rng = random.Random(args.seed)
    started = time.monotonic()
    measured_from = started + WARMUP_S
    ends = measured_from + args.seconds
    down, up = (measured_from + share * args.seconds for share in OUTAGE)
    chaos = asyncio.create_task(outage(simulator, down, up))
    tasks: list[asyncio.Task[None]] = []
    index, next_at = 0, started
    while next_at < ends:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        region = CALLER_REGIONS[index % 2]
        measured = next_at >= measured_from
        tasks.extend(asyncio.create_task(m.send(index, region, measured)) for m in modes)
        index, next_at = index + 1, next_at + rng.expovariate(args.rate)
    await asyncio.gather(*tasks, chaos)
    print(f"  {index} arrivals per mode in {time.monotonic() - started:.1f}s")


def table(modes: list[Mode]) -> str:
    lines = [
        "| mode | p50 ms | p99 ms | p99.9 ms | failed | extra calls / requests |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in modes:
        lines.append(
            f"| {m.name} | {m.percentile_ms(50):.0f} | {m.percentile_ms(99):.0f} | "
            f"{m.percentile_ms(99.9):.0f} | {m.failed}/{m.measured} "
            f"({m.failed / m.measured:.2%}) | {m.extra_calls_ratio:.2%} |"
        )
    return "\n".join(lines)


def summary(modes: list[Mode], args: argparse.Namespace) -> dict[str, Any]:
    by_name = {m.name: m for m in modes}
    hedged, failover = by_name["failover+hedging"], by_name["failover"]

    def each(value: Callable[[Mode], float]) -> dict[str, float]:
        return {m.name: round(value(m), 4) for m in modes}

    return {
        "failed": hedged.failed,
        "p99_ratio_hedged_vs_failover": round(
            hedged.percentile_ms(99) / failover.percentile_ms(99), 3
        ),
        "extra_calls_ratio": round(hedged.extra_calls_ratio, 4),
        "failed_by_mode": {m.name: m.failed for m in modes},
        "extra_calls_ratio_by_mode": each(lambda m: m.extra_calls_ratio),
        "p50_ms": each(lambda m: m.percentile_ms(50)),
        "p99_ms": each(lambda m: m.percentile_ms(99)),
        "p999_ms": each(lambda m: m.percentile_ms(99.9)),
        "hedges": hedged.hedges(),
        "measured_per_mode": hedged.measured,
        "rate_rps_per_mode": args.rate,
        "seconds": args.seconds,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with simulator_process(args.seed) as simulator:
        simulator.prepare()
        modes = make_modes(simulator, TokenCounter(), args.seed)
        try:
            await run(modes, simulator, args)
        finally:
            for mode in modes:
                await mode.transport.aclose()
    print()
    print(table(modes))
    print()
    return summary(modes, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=25.0, help="requests per second per mode")
    parser.add_argument("--seconds", type=float, default=40.0, help="measured stretch")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(
        f"tail benchmark: {args.rate:g} req/s to each of 3 modes side by side, {WARMUP_S:g}s "
        f"warm-up + {args.seconds:g}s measured; us-east slow tail "
        f"{SLOW_TAIL['slow_rate']:.0%} x{SLOW_TAIL['slow_factor']}, eu-west down from "
        f"{OUTAGE[0]:.0%} to {OUTAGE[1]:.0%} of the measured stretch"
    )
    # Failed upstream calls are the point of the exercise; their warnings would drown the table.
    logging.getLogger("services.dispatcher").setLevel(logging.ERROR)
    print(json.dumps(asyncio.run(main_async(args)), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Steady-load soak of the whole mesh: nothing lost, no unbounded growth, the ledger adds up.

    python -m benchmarks.load                       # 10 minutes at ~70% of the machine
    python -m benchmarks.load --duration 60         # a short run

It starts every service and the simulator as real processes, makes each simulator region fail
1% of calls with HTTP 500, measures the mesh's saturated throughput for a few seconds, then
sends requests at a fixed fraction of it (open loop: arrivals do not wait for answers, as real
traffic does not). Requests mix the router's gRPC Complete and its OpenAI-compatible HTTP
endpoint, fresh prompts and repeats (cache hits). At the end it checks:

- every request got an answer or a clear status (a known code and a message); anything else,
  or no reply within the deadline, is *lost*;
- each process's RSS over the run (sampled every 15 s), after warm-up and at the end;
- the router's budget ledger (SpendService) grew by exactly the sum of the answered requests'
  costs.

The last line is one JSON object with these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import httpx
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as router_pb
from sluice.router.v1 import router_service_pb2_grpc as router_grpc
from sluice.router.v1 import spend_service_pb2 as spend_pb
from sluice.router.v1 import spend_service_pb2_grpc as spend_grpc

from benchmarks.load_probe import MachineProbe
from shared.mesh import Mesh, free_ports
from shared.otlp_receiver import OtlpReceiver

API_KEY = "dev"
REGIONS = ("us-east", "eu-west", "ap-south")
REQUEST_TIMEOUT_S = 30.0
TOPICS = (
    "consistent hashing",
    "the CAP theorem",
    "TCP slow start",
    "B-trees",
    "vector clocks",
    "bloom filters",
    "Raft leader election",
    "HTTP/2 multiplexing",
)


@dataclass
class Tally:
    """What became of every request sent."""

    sent: int = 0
    answered: int = 0
    cache_hits: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    cost_nano_usd: int = 0
    charged: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def answer(self, cost_nano_usd: int, cache_hit: bool, latency_s: float) -> None:
        self.answered += 1
        self.cache_hits += cache_hit
        self.cost_nano_usd += cost_nano_usd
        self.charged += cost_nano_usd > 0
        self.latencies_s.append(latency_s)

    def status(self, code: str, message: str) -> None:
        # A clear status names a known code and says what went wrong.
        if code in ("UNKNOWN", "") or not message.strip():
            self.lost.append(f"{code or 'no code'}: {message!r}")
        else:
            self.statuses[code] = self.statuses.get(code, 0) + 1

    @property
    def settled(self) -> int:
        return self.answered + sum(self.statuses.values()) + len(self.lost)


class Traffic:
    """Sends one request of the mix: gRPC or HTTP, a fresh prompt or a repeat."""

    def __init__(self, mesh: Mesh, channel: grpc.aio.Channel, http: httpx.AsyncClient) -> None:
        self._router = router_grpc.RouterServiceStub(channel)
        self._http = http
        self._url = f"http://{mesh.address('router_http')}/v1/chat/completions"
        self._seen: list[str] = []
        self._count = 0

    def _prompt(self) -> str:
        self._count += 1
        # One request in five repeats an earlier prompt: an exact cache hit.
        if self._seen and self._count % 5 == 0:
            return self._seen[(self._count * 7919) % len(self._seen)]
        topic = TOPICS[self._count % len(TOPICS)]
        prompt = f"In two sentences, explain {topic} ({uuid.uuid4().hex[:12]})."
        # Repeats come from the most recent prompts, which the bounded cache still holds.
        self._seen = [*self._seen[-999:], prompt]
        return prompt

    async def send(self, tally: Tally) -> None:
        prompt = self._prompt()
        via_http = self._count % 4 == 0
        tally.sent += 1
        started = time.monotonic()
        try:
            if via_http:
                await self._send_http(prompt, tally, started)
            else:
                await self._send_grpc(prompt, tally, started)
        # Anything else (a reset connection, a malformed body) is a lost request, and counted.
        except Exception as error:
            tally.lost.append(f"{type(error).__name__}: {error}")

    async def _send_grpc(self, prompt: str, tally: Tally, started: float) -> None:
        request = router_pb.CompleteRequest(
            messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=prompt)]
        )
        try:
            response = await self._router.Complete(
                request, metadata=(("x-api-key", API_KEY),), timeout=REQUEST_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            tally.status(error.code().name, error.details() or "")
            return
        if not response.content:
            tally.lost.append("an empty answer with status OK")
            return
        tally.answer(
            response.cost.total_cost_nano_usd, response.cache_hit, time.monotonic() - started
        )

    async def _send_http(self, prompt: str, tally: Tally, started: float) -> None:
        response = await self._http.post(
            self._url,
            json={"messages": [{"role": "user", "content": prompt}]},
            headers={"authorization": f"Bearer {API_KEY}"},
            timeout=REQUEST_TIMEOUT_S,
        )
        if response.status_code != 200:
            error = response.json().get("error", {})
            tally.status(str(error.get("code", "")).upper(), str(error.get("message", "")))
            return
        body = response.json()
        if not body["choices"][0]["message"]["content"]:
            tally.lost.append("an empty answer with HTTP 200")
            return
        # The header carries the cost to the nano-dollar; the JSON float may round.
        cost = int(Decimal(response.headers["x-sluice-cost-usd"]) * 1_000_000_000)
        tally.answer(cost, bool(body["sluice"]["cache_hit"]), time.monotonic() - started)


async def saturate(traffic: Traffic, seconds: float, concurrency: int) -> float:
    """Answers per second with `concurrency` callers in a closed loop: the mesh's capacity."""
    tally = Tally()
    stop_at = time.monotonic() + seconds

    async def caller() -> None:
        while time.monotonic() < stop_at:
            await traffic.send(tally)

    started = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return tally.answered / (time.monotonic() - started)


async def steady(traffic: Traffic, rate: float, seconds: float, probe: MachineProbe) -> Tally:
    """Open loop: one request every 1/rate seconds, whatever the answers' latency."""
    tally = Tally()
    pending: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    next_sample = started
    sent = 0
    while (now := time.monotonic()) - started < seconds:
        if now >= next_sample:
            probe.sample()
            next_sample += 15.0
        due = int((now - started) * rate) + 1
        for _ in range(due - sent):
            task = asyncio.ensure_future(traffic.send(tally))
            pending.add(task)
            task.add_done_callback(pending.discard)
        sent = max(sent, due)
        await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
    if pending:
        await asyncio.wait(pending, timeout=REQUEST_TIMEOUT_S + 5)
    probe.sample()
    return tally


async def spent(channel: grpc.aio.Channel) -> spend_pb.GetSpendResponse:
    stub = spend_grpc.SpendServiceStub(channel)
    response: spend_pb.GetSpendResponse = await stub.GetSpend(
        spend_pb.GetSpendRequest(), metadata=(("x-api-key", API_KEY),), timeout=10
    )
    return response


def inject_errors(mesh: Mesh, error_rate: float) -> None:
    for region in REGIONS:
        url = f"http://{mesh.address('simulator')}/admin/regions/{region}"
        httpx.post(url, json={"error_rate": error_rate}, timeout=5).raise_for_status()


def upstream_errors(mesh: Mesh) -> int:
    """HTTP 500s the simulator has injected so far, over every region."""
    stats = httpx.get(f"http://{mesh.address('simulator')}/admin/stats", timeout=5).json()
    return sum(region["faults"].get("error", 0) for region in stats["regions"].values())


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(mesh: Mesh, args: argparse.Namespace) -> dict[str, Any]:
    probe = MachineProbe({name: p.pid for name, p in mesh.processes.items()})
    async with (
        grpc.aio.insecure_channel(mesh.address("router")) as channel,
        httpx.AsyncClient(limits=httpx.Limits(max_connections=256)) as http,
    ):
        traffic = Traffic(mesh, channel, http)
        capacity = await saturate(traffic, args.calibrate_s, concurrency=32)
        rate = args.rate or capacity * args.utilisation
        print(f"capacity {capacity:.1f} answers/s; sending {rate:.1f}/s", file=sys.stderr)
        inject_errors(mesh, args.error_rate)
        before = await spent(channel)
        probe.start()
        tally = await steady(traffic, rate, args.duration, probe)
        after = await spent(channel)
    result = report(tally, probe, before, after, rate, capacity, args)
    result["upstream_errors_injected"] = upstream_errors(mesh)
    return result


def report(
    tally: Tally,
    probe: MachineProbe,
    before: spend_pb.GetSpendResponse,
    after: spend_pb.GetSpendResponse,
    rate: float,
    capacity: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    ledger_delta = after.today_nano_usd - before.today_nano_usd
    charged_delta = after.charged_requests_today - before.charged_requests_today
    return {
        "duration_s": args.duration,
        "capacity_rps": round(capacity, 1),
        "target_rps": round(rate, 1),
        "achieved_rps": round(tally.settled / args.duration, 1),
        "cpu_utilisation": round(probe.cpu_utilisation(), 3),
        "error_rate_injected": args.error_rate,
        "sent": tally.sent,
        "answered": tally.answered,
        "cache_hits": tally.cache_hits,
        "clear_statuses": tally.statuses,
        "lost": len(tally.lost),
        "lost_examples": tally.lost[:5],
        "unsettled": tally.sent - tally.settled,
        "latency_p50_ms": round(percentile(tally.latencies_s, 0.5) * 1000, 1),
        "latency_p99_ms": round(percentile(tally.latencies_s, 0.99) * 1000, 1),
        "ledger_delta_nano_usd": ledger_delta,
        "responses_cost_nano_usd": tally.cost_nano_usd,
        "ledger_matches": ledger_delta == tally.cost_nano_usd and charged_delta == tally.charged,
        "rss_mib": probe.rss_summary(),
        "rss_bounded": probe.rss_bounded(),
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"{'process':<12} {'RSS after warm-up':>18} {'RSS mid-run':>12} {'RSS at end':>11}")
    for name, (first, middle, last) in result["rss_mib"].items():
        print(f"{name:<12} {first:>15.1f} MiB {middle:>8.1f} MiB {last:>7.1f} MiB")
    print(
        f"sent {result['sent']} at {result['achieved_rps']}/s "
        f"(capacity {result['capacity_rps']}/s, CPU {result['cpu_utilisation']:.0%}); "
        f"{result['upstream_errors_injected']} upstream 500s injected; "
        f"answered {result['answered']}, clear statuses {result['clear_statuses']}, "
        f"lost {result['lost']}, unsettled {result['unsettled']}; "
        f"latency p50 {result['latency_p50_ms']} ms, p99 {result['latency_p99_ms']} ms; ledger "
        f"{'matches' if result['ledger_matches'] else 'DIFFERS'}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of steady load")
    parser.add_argument("--utilisation", type=float, default=0.7, help="share of capacity")
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s (overrides)")
    parser.add_argument("--error-rate", type=float, default=0.01, help="injected HTTP 500s")
    parser.add_argument("--calibrate-s", type=float, default=20.0)
    parser.add_argument("--cache-entries", type=int, default=2000)
    parser.add_argument("--logs", type=Path, default=Path(".sluice/bench/load"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    receiver = OtlpReceiver(keep=False).start()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "SLUICE_CACHE_DATA_DIR": str(args.logs / "cache"),
        "SLUICE_BATCHER_DATA_DIR": str(args.logs / "batcher"),
        # A small bound, reached in the first minutes, so the run shows the cache staying
        # within it rather than still filling up.
        "SLUICE_CACHE_MAX_ENTRIES": str(args.cache_entries),
    }
    mesh = Mesh.plan(free_ports(), args.logs, env)
    try:
        mesh.start_all()
        mesh.wait_ready(timeout_s=300)
        result = asyncio.run(run(mesh, args))
        result["spans_received"] = receiver.received
        exit_codes = mesh.stop_all()
        result["clean_exit"] = all(code == 0 for code in exit_codes.values())
    finally:
        mesh.stop_all()
        receiver.stop()
    print_table(result)
    print(json.dumps(result, sort_keys=True))
    ok = result["lost"] == 0 and result["ledger_matches"] and result["rss_bounded"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

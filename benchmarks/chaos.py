"""Chaos benchmark of `sluice up`'s supervisor: steady traffic while services are killed.

    python -m benchmarks.chaos [--duration-s 600] [--rate 5] [--kill-every-s 30] [--seed 1]
    python -m benchmarks.chaos --short        # a 60-second smoke run

It runs `sluice up --free-ports` exactly as a user does, injects 1% upstream errors (HTTP 500)
in every simulator region, and sends requests at a steady rate through the router: 80% gRPC
`Complete`, 20% the OpenAI-compatible HTTP front door. Every kill-every-s it sends SIGKILL to
one service picked at random among all six (the router and the simulator included); the
supervisor must bring it back while the rest keep answering.

Each request ends one of three ways:
- answered;
- failed with a clear status: a gRPC status, an HTTP error in OpenAI's shape, or a refused
  connection while the router is down (a client can tell at once what happened and retry);
- lost: anything else, i.e. no answer within the deadline plus a margin, a connection dropped
  without a status, or an error body that is not OpenAI's shape. The target is 0.

It prints requests sent, answered and failed by status, the longest stretch without a single
successful answer, the kills and restarts, and the RSS of every process (sluice up itself, with
its trace receiver, and each service's current process) at the start and the end. The last line
is one JSON object for machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as router_pb
from sluice.router.v1 import router_service_pb2_grpc as router_grpc

from shared.mesh import START_ORDER

API_KEY = "dev"
REGIONS = ("us-east", "eu-west", "ap-south")
UPSTREAM_FAULTS = {"error_rate": 0.01}
DEADLINE_S = 30.0
# A request still open this long after its deadline is a hang, not a slow answer.
HANG_MARGIN_S = 10.0
HTTP_SHARE = 0.2
# Topics repeat, so some answers come from the cache and the cache's death is visible.
TOPICS = 40
SLUICE = [sys.executable, "-m", "shared.cli.main"]
# The client reconnects quickly after the router comes back (gRPC's default waits up to 120 s).
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)


@dataclass(frozen=True)
class Outcome:
    """How one request ended: kind is answered, failed or lost; detail the status or reason."""

    sent_at: float
    ended_at: float
    kind: str
    detail: str = ""


@dataclass
class Tally:
    t0: float = field(default_factory=time.monotonic)
    outcomes: list[Outcome] = field(default_factory=list)
    kills: list[tuple[float, str]] = field(default_factory=list)


def longest_gap(success_times: Iterable[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] with no successful answer."""
    edges = [start, *sorted(t for t in success_times if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(edges))


def growth_ratios(start: Mapping[str, int], end: Mapping[str, int]) -> dict[str, float]:
    """RSS at the end over RSS at the start, for the processes measured both times."""
    return {name: end[name] / start[name] for name in start if name in end and start[name] > 0}


def summary(tally: Tally, start: float, end: float, ratios: Mapping[str, float]) -> dict[str, Any]:
    failed = Counter(o.detail for o in tally.outcomes if o.kind == "failed")
    lost = Counter(o.detail for o in tally.outcomes if o.kind == "lost")
    answered = [o.ended_at for o in tally.outcomes if o.kind == "answered"]
    return {
        "sent": len(tally.outcomes),
        "answered": len(answered),
        "failed": sum(failed.values()),
        "failed_by_status": dict(failed.most_common()),
        "lost": sum(lost.values()),
        "lost_by_reason": dict(lost.most_common()),
        "kills": len(tally.kills),
        "unanswered_gap_s_max": round(longest_gap(answered, start, end), 2),
        "rss_growth_ratio_max": round(max(ratios.values(), default=0.0), 3),
    }


# ----------------------------------------------------------------------------- processes


def rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found[1]) if found else 0


def service_pids(parent: int) -> dict[str, int]:
    """The live service processes `sluice up` started, by service name."""
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        return {}
    found: dict[str, int] = {}
    for pid in map(int, children):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for name in START_ORDER:
            if f"services.{name}".encode() in argv:
                found[name] = pid
    return found


def rss_by_process(parent: int) -> dict[str, int]:
    return {"sluice up": rss_kb(parent)} | {n: rss_kb(p) for n, p in service_pids(parent).items()}


class SluiceUp:
    """`sluice up --free-ports` as a child process, its output read by a thread."""

    def __init__(self, home: Path) -> None:
        env = {**os.environ, "SLUICE_HOME": str(home)}
        self.process = subprocess.Popen(
            [*SLUICE, "up", "--free-ports"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.up = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("Stop with Ctrl-C"):
                self.up.set()

    def address(self, name: str) -> str:
        pattern = re.compile(rf"^\s+{name}\s+\w+://(127\.0\.0\.1:\d+)")
        for line in self.lines:
            if found := pattern.match(line):
                return found[1]
        raise RuntimeError(f"sluice up printed no address for {name}")

    def restarts(self) -> list[str]:
        return [line for line in self.lines if " restarted (restart " in line]

    def stop(self, timeout_s: float = 90) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(5)
        return code, time.monotonic() - started


# ----------------------------------------------------------------------------- traffic


def prompt(n: int) -> str:
    return (
        f"In two sentences, what is worth knowing about topic {n % TOPICS} of distributed systems?"
    )


async def ask_grpc(stub: router_grpc.RouterServiceAsyncStub, n: int) -> Outcome:
    sent = time.monotonic()
    request = router_pb.CompleteRequest(
        messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=prompt(n))]
    )
    try:
        await asyncio.wait_for(
            stub.Complete(request, metadata=(("x-api-key", API_KEY),), timeout=DEADLINE_S),
            DEADLINE_S + HANG_MARGIN_S,
        )
    except grpc.aio.AioRpcError as error:
        return Outcome(sent, time.monotonic(), "failed", f"grpc {error.code().name}")
    except TimeoutError:
        return Outcome(sent, time.monotonic(), "lost", "grpc hang past the deadline")
    return Outcome(sent, time.monotonic(), "answered")


async def ask_http(client: httpx.AsyncClient, url: str, n: int) -> Outcome:
    sent = time.monotonic()
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt(n)}]}
    try:
        reply = await asyncio.wait_for(
            client.post(url, json=body, headers={"authorization": f"Bearer {API_KEY}"}),
            DEADLINE_S + HANG_MARGIN_S,
        )
    except httpx.ConnectError:
        return Outcome(sent, time.monotonic(), "failed", "http connection refused")
    except (TimeoutError, httpx.TimeoutException):
        return Outcome(sent, time.monotonic(), "lost", "http hang past the deadline")
    except httpx.HTTPError as error:
        return Outcome(sent, time.monotonic(), "lost", f"http dropped: {type(error).__name__}")
    return classify_http(sent, reply.status_code, reply.content)


def classify_http(sent: float, status: int, content: bytes) -> Outcome:
    """A 200 with choices is answered; an error with OpenAI's error shape is a clear failure."""
    ended = time.monotonic()
    try:
        payload = json.loads(content)
    except ValueError:
        return Outcome(sent, ended, "lost", f"http {status} without a JSON body")
    if status == 200 and isinstance(payload, dict) and payload.get("choices"):
        return Outcome(sent, ended, "answered")
    error = payload.get("error") if isinstance(payload, dict) else None
    if status >= 400 and isinstance(error, dict) and isinstance(error.get("message"), str):
        return Outcome(sent, ended, "failed", f"http {status}")
    return Outcome(sent, ended, "lost", f"http {status} in no known shape")


async def keep_faults(simulator: str, stop: asyncio.Event) -> None:
    """Puts the 1% upstream errors back whenever the simulator restarts without them."""
    async with httpx.AsyncClient(timeout=5) as client:
        while not stop.is_set():
            for region in REGIONS:
                # While the simulator is down this fails; the next round tries again.
                with contextlib.suppress(httpx.HTTPError):
                    await client.post(
                        f"http://{simulator}/admin/regions/{region}", json=UPSTREAM_FAULTS
                    )
            await asyncio.sleep(2)


async def kill_now_and_then(
    up: SluiceUp, every_s: float, rng: random.Random, tally: Tally, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            name = rng.choice(START_ORDER)
            pid = service_pids(up.process.pid).get(name)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                tally.kills.append((time.monotonic(), name))
                since = time.monotonic() - tally.t0
                print(f"  t={since:6.1f}s  kill -9 {name} (pid {pid})", flush=True)


async def drive(up: SluiceUp, args: argparse.Namespace, tally: Tally) -> tuple[float, float]:
    rng = random.Random(args.seed)
    stop = asyncio.Event()
    url = f"http://{up.address('openai')}/v1/chat/completions"
    tasks: list[asyncio.Task[Outcome]] = []
    async with (
        grpc.aio.insecure_channel(up.address("router"), options=CHANNEL_OPTIONS) as channel,
        httpx.AsyncClient(timeout=DEADLINE_S) as client,
    ):
        stub: router_grpc.RouterServiceAsyncStub = router_grpc.RouterServiceStub(channel)
        helpers = [
            asyncio.create_task(keep_faults(up.address("simulator"), stop)),
            asyncio.create_task(kill_now_and_then(up, args.kill_every_s, rng, tally, stop)),
        ]
        start = time.monotonic()
        for n in range(int(args.duration_s * args.rate)):
            await asyncio.sleep(max(0.0, start + n / args.rate - time.monotonic()))
            use_http = rng.random() < HTTP_SHARE
            tasks.append(
                asyncio.create_task(ask_http(client, url, n) if use_http else ask_grpc(stub, n))
            )
        end = time.monotonic()
        stop.set()
        await asyncio.gather(*helpers)
        tally.outcomes.extend(await asyncio.gather(*tasks))
    return start, end


def print_rss(before: Mapping[str, int], after: Mapping[str, int]) -> None:
    print(f"{'process':<12}{'RSS start (MB)':>16}{'RSS end (MB)':>14}{'ratio':>8}")
    for name in before:
        end = after.get(name, 0)
        ratio = f"{end / before[name]:.2f}" if before[name] and end else "-"
        print(f"{name:<12}{before[name] / 1024:>16.1f}{end / 1024:>14.1f}{ratio:>8}")


def report(figures: Mapping[str, Any], restarts: Sequence[str]) -> None:
    print(f"\nrequests sent      {figures['sent']}")
    print(f"answered           {figures['answered']}")
    print(f"failed (status)    {figures['failed']}  {figures['failed_by_status']}")
    print(f"lost               {figures['lost']}  {figures['lost_by_reason']}")
    print(f"kills / restarts   {figures['kills']} / {len(restarts)}")
    print(f"longest gap with no answer  {figures['unanswered_gap_s_max']:.2f} s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=5.0, help="requests per second")
    parser.add_argument("--kill-every-s", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--short", action="store_true", help="60 s, a kill every 15 s")
    args = parser.parse_args(argv)
    if args.short:
        args.duration_s, args.kill_every_s = 60.0, 15.0
    with tempfile.TemporaryDirectory(prefix="sluice-chaos-") as home:
        up = SluiceUp(Path(home))
        try:
            if not up.up.wait(300):
                raise RuntimeError("sluice up did not come up:\n" + "\n".join(up.lines[-30:]))
            rss_start = rss_by_process(up.process.pid)
            tally = Tally()
            print(
                f"sluice up is ready; sending {args.rate}/s for {args.duration_s:.0f} s", flush=True
            )
            start, end = asyncio.run(drive(up, args, tally))
            rss_end = rss_by_process(up.process.pid)
        finally:
            code, stop_s = up.stop()
        print("\n".join(line for line in up.lines if "exited with code" in line))
    figures = summary(tally, start, end, growth_ratios(rss_start, rss_end))
    figures |= {"duration_s": args.duration_s, "rate": args.rate, "restarts": len(up.restarts())}
    figures |= {"sluice_up_exit": code, "stop_s": round(stop_s, 1)}
    report(figures, up.restarts())
    print_rss(rss_start, rss_end)
    print(f"sluice up stopped in {stop_s:.1f} s with exit code {code}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

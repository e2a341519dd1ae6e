"""The client side of the overhead benchmark: targets, a closed-loop load generator, figures.

Every target is called the same way: one long-lived client (a keep-alive pool, or one gRPC
channel), `concurrency` workers each sending its next prompt as soon as the last one answered,
and the latency of each request taken with `perf_counter` around the call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
import httpx
import numpy as np
import orjson
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as router_pb
from sluice.router.v1 import router_service_pb2_grpc as router_grpc

from benchmarks.overhead_http import KeepAliveClient

# The model every upstream call names: the default policy's first tier, so that Sluice's miss
# path and the direct and LiteLLM calls ask the simulator for the same thing.
UPSTREAM_MODEL = "Qwen/Qwen3-8B"
# The default policy's chat class sends max_tokens 512; the others send the same.
MAX_TOKENS = 512
REQUEST_TIMEOUT_S = 60.0

# Sends one prompt; returns how the gateway says it answered ("exact", "semantic", "miss" or ""
# when the target does not say), or raises.
Send = Callable[[str], Awaitable[str]]


@dataclass
class RunResult:
    """One (target, path, concurrency) run."""

    latencies_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    errors: int = 0
    first_error: str = ""
    # Latencies by how the gateway answered ("exact", "semantic", "miss", "" = not said).
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    upstream_calls: int = 0
    # Which answers the figures are about: "semantic" on that path, where a paraphrase the
    # cache does not match is a miss that goes upstream and is counted apart.
    kind: str | None = None

    @property
    def kinds(self) -> dict[str, int]:
        return {kind: len(found) for kind, found in self.by_kind.items()}

    def merge(self, other: RunResult) -> None:
        """Adds another round of the same run (rounds interleave targets; see overhead.py)."""
        self.latencies_s += other.latencies_s
        self.wall_s += other.wall_s
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error
        for kind, found in other.by_kind.items():
            self.by_kind.setdefault(kind, []).extend(found)
        self.upstream_calls += other.upstream_calls

    @property
    def rps(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s else 0.0

    def percentile_ms(self, q: float, minus_s: float = 0.0) -> float:
        found = self.latencies_s if self.kind is None else self.by_kind.get(self.kind, [])
        if not found:
            return float("nan")
        return float(np.percentile(np.asarray(found) - minus_s, q) * 1000)


async def closed_loop(send: Send, prompts: Sequence[str], concurrency: int) -> RunResult:
    """Sends every prompt once, `concurrency` at a time; failed requests are counted apart."""
    result = RunResult()
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(prompts):
            prompt = prompts[next_index]
            next_index += 1
            started = time.perf_counter()
            try:
                kind = await send(prompt)
            except Exception as error:  # every failure is counted, and the first one shown
                result.errors += 1
                result.first_error = result.first_error or f"{type(error).__name__}: {error}"
                continue
            elapsed = time.perf_counter() - started
            result.latencies_s.append(elapsed)
            result.by_kind.setdefault(kind, []).append(elapsed)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - started
    return result


def chat_body(prompt: str, model: str) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": MAX_TOKENS,
        }
    )


def openai_sender(
    client: KeepAliveClient, path: str, api_key: str, model: str, *, sluice: bool
) -> Send:
    """POSTs chat completions; for Sluice, reads which cache outcome the stages report."""
    headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}

    async def send(prompt: str) -> str:
        reply = await asyncio.wait_for(
            client.post(path, chat_body(prompt, model), headers), REQUEST_TIMEOUT_S
        )
        if reply.status != 200:
            raise RuntimeError(f"HTTP {reply.status}: {reply.body[:200]!r}")
        body = orjson.loads(reply.body)
        if not body["choices"][0]["message"]["content"]:
            raise RuntimeError("empty answer")
        if not sluice:
            return ""
        return cache_kind(str(body["sluice"]["stages"][0]["detail"]))

    return send


def cache_kind(detail: str) -> str:
    """The cache stage's detail reads "miss", "exact hit" or "semantic hit (similarity …)"."""
    kind = detail.split(" ", 1)[0]
    return kind if kind in ("exact", "semantic") else "miss"


def grpc_sender(channel: grpc.aio.Channel, api_key: str) -> Send:
    """RouterService.Complete, the path internal services use."""
    stub = router_grpc.RouterServiceStub(channel)
    metadata = (("x-api-key", api_key),)

    async def send(prompt: str) -> str:
        request = router_pb.CompleteRequest(
            messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=prompt)]
        )
        response = await stub.Complete(request, metadata=metadata, timeout=REQUEST_TIMEOUT_S)
        if not response.content:
            raise RuntimeError("empty answer")
        return cache_kind(response.cost.stages[0].detail)

    return send


def upstream_received(client: httpx.Client, simulator_url: str) -> int:
    """Chat requests the simulator has received so far."""
    stats = client.get(f"{simulator_url}/admin/stats", timeout=10).json()
    return sum(int(region["received"]) for region in stats["regions"].values())

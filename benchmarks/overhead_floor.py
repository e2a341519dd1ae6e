"""What this machine allows a Python gateway at all: the floor under the hit-path targets.

    python -m benchmarks.overhead_floor [--requests 3000] [--embeddings 300]

Measures, with the overhead benchmark's own client (`overhead_http.py`) in a closed loop at
concurrency 1, 16 and 64, two servers that do nothing but answer, each in its own process as
the router is:

- **bare HTTP**: uvicorn on uvloop with httptools (the router's HTTP stack), a raw ASGI app that
  returns one fixed chat-completion JSON. No routing, auth, policy, tracing or cache: the least
  any Python HTTP gateway can do to answer from memory.
- **HTTP + one gRPC hop**: the same app awaiting one unary grpc.aio call to an echo server in a
  third process before it answers: the least an exact hit served by a separate cache service
  costs (the design before issue #18).
- **HTTP + in-process exact lookup**: the same app hashing the request body (SHA-256) and
  answering from a bounded in-memory table: the least an exact hit served from the router's own
  exact layer costs (issue #18's design, no hop). The router's real work per hit (admission,
  policy, spans, the cost table) comes on top.

It also times all-MiniLM-L6-v2 on ONNX Runtime (the cache's embedder, one thread, one query per
call as a lone semantic lookup runs it) on short questions, in CPU seconds, and derives the
fewest CPU-seconds per semantic hit. In a closed loop p99 >= mean latency = concurrency /
throughput (Little's law), and throughput <= cores / CPU per request, so these give lower
bounds on the hit-path p99 at concurrency 16 that no implementation on this stack can beat.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from benchmarks.common import markdown_table, stop_process
from benchmarks.overhead_http import KeepAliveClient
from benchmarks.overhead_load import RunResult, closed_loop
from shared.mesh import free_port

LEVELS = (1, 16, 64)
BARE, HOP, LOCAL = "bare HTTP", "HTTP + one gRPC hop", "HTTP + in-process exact lookup"
ECHO_METHOD = "/sluice.floor.Echo/Echo"
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-floor",
        "object": "chat.completion",
        "model": "floor",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris is the capital of France."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
    }
)
QUESTIONS = (
    "How do I improve my English speaking skills quickly?",
    "What is the best way to learn machine learning on my own?",
    "Why is the sky blue during the day and red at sunset?",
    "Which laptop should I buy for programming under 1000 dollars?",
    "How can I lose weight without going to the gym?",
    "What are the differences between TCP and UDP?",
)


async def _read_body(receive: Callable[[], Awaitable[dict[str, Any]]]) -> bytes:
    parts, more = [], True
    while more:
        message = await receive()
        parts.append(message.get("body", b""))
        more = bool(message.get("more_body"))
    return b"".join(parts)


# Entries the in-process exact table keeps, oldest dropped first.
LOCAL_ENTRIES = 10_000


def _http_app(upstream: str | None, local: bool = False) -> Callable[..., Awaitable[None]]:
    """A raw ASGI app; with `upstream`, each request first makes one gRPC call there; with
    `local`, it answers from an in-process table keyed by the body's SHA-256 (filled on a
    miss)."""
    call: Any = None
    table: OrderedDict[bytes, bytes] = OrderedDict()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal call
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        answer = ANSWER
        if local:
            key = hashlib.sha256(body).digest()
            found = table.get(key)
            if found is None:
                table[key] = answer
                if len(table) > LOCAL_ENTRIES:
                    table.popitem(last=False)
            else:
                table.move_to_end(key)
                answer = found
        if upstream is not None:
            if call is None:
                import grpc

                call = grpc.aio.insecure_channel(upstream).unary_unary(ECHO_METHOD)
            await call(b"ping", timeout=10)
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return app


def serve_http(port: int, upstream: str | None, local: bool = False) -> None:
    import uvicorn

    config = uvicorn.Config(
        _http_app(upstream, local),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
    uvicorn.Server(config).run()


def serve_echo(port: int) -> None:
    import grpc
    import uvloop

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    async def run() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "sluice.floor.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(run())


def _start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.overhead_floor", *args])


def _wait_listening(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f} s")


async def _drive(port: int, requests: int, concurrency: int, warmup: int) -> RunResult:
    client = KeepAliveClient(f"http://127.0.0.1:{port}", concurrency)
    headers = {"content-type": "application/json"}
    body = orjson.dumps({"model": "floor", "messages": [{"role": "user", "content": "hi"}]})

    async def send(_: str) -> str:
        reply = await client.post("/v1/chat/completions", body, headers)
        if reply.status != 200:
            raise RuntimeError(f"status {reply.status}")
        return ""

    try:
        await closed_loop(send, [""] * warmup, concurrency)
        return await closed_loop(send, [""] * requests, concurrency)
    finally:
        await client.aclose()


def measure_servers(requests: int, warmup: int = 200) -> dict[str, dict[int, RunResult]]:
    echo_port, bare_port, hop_port, local_port = free_port(), free_port(), free_port(), free_port()
    processes = [
        _start("--serve-echo", str(echo_port)),
        _start("--serve-http", str(bare_port)),
        _start("--serve-http", str(hop_port), "--upstream", f"127.0.0.1:{echo_port}"),
        _start("--serve-http", str(local_port), "--local-exact"),
    ]
    servers = ((BARE, bare_port), (HOP, hop_port), (LOCAL, local_port))
    try:
        for port in (echo_port, bare_port, hop_port, local_port):
            _wait_listening(port)
        results: dict[str, dict[int, RunResult]] = {name: {} for name, _ in servers}
        for level in LEVELS:
            # Alternate the servers at each level, so load from outside falls on all alike.
            for name, port in servers:
                results[name][level] = asyncio.run(_drive(port, requests, level, warmup))
        return results
    finally:
        for process in processes:
            stop_process(process)


def embedding_cpu_s(count: int) -> float:
    """Median CPU seconds per single-question embedding on ONNX Runtime, one thread."""
    from shared.embedding.onnx import OnnxMiniLmEmbedder, default_model_dir

    embedder = OnnxMiniLmEmbedder(default_model_dir(os.environ), threads=1)
    embedder.load()
    for question in QUESTIONS:
        embedder.embed([question])
    samples = []
    for n in range(count):
        started = time.process_time()
        embedder.embed([f"{QUESTIONS[n % len(QUESTIONS)]} ({n})"])
        samples.append(time.process_time() - started)
    samples.sort()
    return samples[len(samples) // 2]


def report(results: dict[str, dict[int, RunResult]], embed_s: float) -> dict[str, Any]:
    rows = [
        [
            name,
            level,
            f"{run.percentile_ms(50):.2f}",
            f"{run.percentile_ms(99):.2f}",
            f"{run.rps:.0f}",
        ]
        for name, by_level in results.items()
        for level, run in by_level.items()
    ]
    print(markdown_table(("server", "c", "p50 ms", "p99 ms", "req/s"), rows))
    cores = os.cpu_count() or 1
    ceiling = cores / embed_s
    print(
        f"\nMiniLM on ONNX Runtime, one thread: {1000 * embed_s:.2f} ms CPU per question; "
        f"{cores} cores embed at most {ceiling:.0f} questions/s, so a closed loop of 16 "
        f"semantic hits waits at least {16000 / ceiling:.1f} ms on average (embedding alone)."
    )
    return {
        "cores": cores,
        "floor_http_p99_ms_c16": round(results[BARE][16].percentile_ms(99), 2),
        "floor_http_rps_c16": round(results[BARE][16].rps),
        "floor_http_grpc_p99_ms_c16": round(results[HOP][16].percentile_ms(99), 2),
        "floor_http_grpc_rps_c16": round(results[HOP][16].rps),
        # The exact-hit floor of the design without a hop (issue #18).
        "floor_exact_local_p99_ms_c16": round(results[LOCAL][16].percentile_ms(99), 2),
        "floor_exact_local_rps_c16": round(results[LOCAL][16].rps),
        "embedding_cpu_ms_per_question": round(1000 * embed_s, 2),
        "semantic_hit_mean_ms_floor_c16": round(16 / ceiling * 1000, 1),
        "errors": sum(run.errors for by_level in results.values() for run in by_level.values()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=3000, help="per server and level")
    parser.add_argument("--embeddings", type=int, default=300)
    parser.add_argument("--serve-http", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    parser.add_argument("--local-exact", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-echo", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_http:
        serve_http(args.serve_http, args.upstream, args.local_exact)
        return
    if args.serve_echo:
        serve_echo(args.serve_echo)
        return
    results = measure_servers(args.requests)
    figures = report(results, embedding_cpu_s(args.embeddings))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

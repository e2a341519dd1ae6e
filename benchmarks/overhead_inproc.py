"""The router's HTTP app answering exact hits from its own copies, in process: no sockets, no
uvicorn, no other service.

    python -m benchmarks.overhead_inproc [--calls 5000] [--rounds 3]

Builds the router as `services.router.server` does (the settings from the environment, the
shipped policy and catalogue, metrics and the usage record), keeps a copy of 200 answers in its
exact copies, and calls the Starlette app directly with the overhead benchmark's request bodies
(`overhead_load.chat_body`), each answered from its copy. Prints the process's CPU time per
call in microseconds per round: the Python the router spends on an exact hit, apart from the
HTTP server and the kernel, and steadier than a whole-mesh run on a busy machine (compare two
checkouts by running it from each). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from benchmarks.overhead_load import chat_body
from services.router import server
from services.router.admission import Admission
from services.router.clients import BatcherReplicas
from services.router.config import Settings
from services.router.exact_local import ExactCopies
from services.router.http_api import FrontDoor, build_http_app
from services.router.metrics import RouterMetrics
from services.router.model import CachedAnswer
from services.router.openai.request import read_chat_call
from shared.chat import Finish
from shared.grpc_client import open_channel
from shared.pricing import TokenUsage, load_catalogue
from shared.telemetry import init_telemetry
from shared.tokens import TokenCounter

PROMPTS = 200
API_KEY = "dev"
ANSWER = "Paris is the capital of France, on the Seine."


def router_app() -> tuple[Starlette, Admission, ExactCopies]:
    """The router's app over the real pipeline; peers are never called for these hits."""
    settings = Settings.from_env()
    telemetry = init_telemetry("sluice-router")
    catalogue = load_catalogue(settings.catalogue_file)
    selector = server.build_selector(settings, catalogue)
    ledger = server.build_ledger(settings, selector)
    tokens = TokenCounter()
    channels = server.open_peer_channels(settings, telemetry)
    batchers = BatcherReplicas(settings.batcher_addr, lambda a: open_channel(a, telemetry))
    metrics = RouterMetrics(CollectorRegistry())
    pipeline = server.build_pipeline(
        settings, telemetry, channels, batchers, catalogue, tokens, ledger, None, metrics,
        server.build_usage(settings),
    )  # fmt: skip
    admission = Admission(selector, tokens, settings.max_prompt_tokens, ledger, catalogue)
    door = FrontDoor(admission, pipeline, selector.primary, telemetry.tracer("bench"), 30.0)
    copies = pipeline.cache.copies
    assert copies is not None, "the router keeps exact copies by default"
    return build_http_app(door, settings.door), admission, copies


def keep_copies(admission: Admission, copies: ExactCopies) -> list[bytes]:
    """Bodies whose answers the copies hold, as the cache's word would have put them there."""
    copies.fresh(time.monotonic() + 1e9)  # no feed runs here: the copies stay servable
    bodies = []
    for n in range(PROMPTS):
        body = chat_body(f"Question {n}: what is the capital of France?", "auto")
        request = admission.admit(API_KEY, read_chat_call(body).asked())
        answer = CachedAnswer(
            "exact", ANSWER, "gpt-4o-mini", TokenUsage(20, 12), 1.0, Finish.STOP, f"e-{n}"
        )
        assert copies.admit(copies.ticket(), request, answer, 3600.0)
        bodies.append(body)
    return bodies


async def call(app: Starlette, body: bytes) -> list[dict[str, Any]]:
    headers = [
        (b"authorization", f"Bearer {API_KEY}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if not messages:
            # Nothing after the body: a client that stays connected.
            await asyncio.Event().wait()
        return messages.pop()

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    respond: Callable[..., Awaitable[None]] = app
    await respond(scope, receive, send)
    return sent


async def measure(calls: int, rounds: int) -> list[float]:
    app, admission, copies = router_app()
    bodies = keep_copies(admission, copies)
    first = await call(app, bodies[0])
    stages = orjson.loads(first[1]["body"])["sluice"]["stages"]
    assert first[0]["status"] == 200 and stages[0]["detail"] == "exact hit (router copy)", stages
    per_call = []
    for _ in range(rounds):
        started = time.process_time()
        for n in range(calls):
            await call(app, bodies[n % PROMPTS])
        per_call.append(1e6 * (time.process_time() - started) / calls)
    return per_call


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    per_call = asyncio.run(measure(args.calls, args.rounds))
    for n, us in enumerate(per_call, 1):
        print(f"round {n}: {us:.1f} us of CPU per exact hit")
    summary = {"cpu_us_per_exact_hit": [round(us, 1) for us in per_call], "load": os.getloadavg()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

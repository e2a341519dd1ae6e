"""The real simulator process (and optionally the real dispatcher process), plus dispatchers
built in-process against it, for the dispatcher's integration tests.

In-process dispatchers get a fresh state and a policy of the test's choosing (ejection times,
budgets, hedging) while talking HTTP to the real simulator over loopback; the dispatcher process
is used where the gRPC boundary itself is under test (deadlines, DispatchStream).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.dispatcher.budgets import BudgetPolicy
from services.dispatcher.calls import ModelRequest
from services.dispatcher.dispatcher import Dispatcher, DispatchPolicy
from services.dispatcher.endpoints import parse_endpoints
from services.dispatcher.providers.openai import OpenAICompatibleClient
from services.dispatcher.server import build_http_client
from shared.chat import Role, Sampling, Turn
from shared.mesh import Mesh, free_ports
from shared.pricing import load_catalogue
from shared.tokens import TokenCounter

REGIONS = ("us-east", "eu-west", "ap-south")
MODEL = "gpt-4o"


def call(text: str = "Say something short.", region: str = "") -> ModelRequest:
    return ModelRequest(MODEL, (Turn(Role.USER, text),), Sampling(max_tokens=16), region)


@contextmanager
def running(log_dir: Path, *names: str) -> Iterator[Mesh]:
    """Starts the named processes (the simulator first) on free loopback ports."""
    mesh = Mesh.plan(free_ports(), log_dir, {"SLUICE_SHUTDOWN_ANNOUNCE_S": "0.2"})
    try:
        for name in names:
            mesh.start(name)
        mesh.wait_ready(names, timeout_s=60)
        yield mesh
    finally:
        mesh.stop_all()


@dataclass
class Simulator:
    url: str

    def patch(self, region: str, **fields: Any) -> None:
        httpx.post(f"{self.url}/admin/regions/{region}", json=fields, timeout=5).raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.url}/admin/reset", timeout=5).raise_for_status()

    def stats(self, region: str) -> dict[str, Any]:
        reply = httpx.get(f"{self.url}/admin/stats", timeout=5).json()
        return dict(reply["regions"][region])

    def endpoints_yaml(self) -> str:
        rows = [
            f"  - {{name: sim-{r}, region: {r}, base_url: '{self.url}/{r}/v1', models: [{MODEL}]}}"
            for r in REGIONS
        ]
        return "endpoints:\n" + "\n".join(rows) + "\n"


@functools.cache
def token_counter() -> TokenCounter:
    return TokenCounter()


@dataclass
class LocalDispatcher:
    dispatcher: Dispatcher
    http: httpx.AsyncClient
    spans: InMemorySpanExporter


def local_dispatcher(simulator: Simulator, **changes: Any) -> LocalDispatcher:
    budgets = changes.pop("budgets", BudgetPolicy())
    policy = dataclasses.replace(
        DispatchPolicy(local_region="us-east", attempt_timeout_s=10, budgets=budgets), **changes
    )
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    http = build_http_client(None)
    dispatcher = Dispatcher(
        parse_endpoints(simulator.endpoints_yaml(), {}),
        OpenAICompatibleClient(http, token_counter(), env={}),
        load_catalogue(),
        provider.get_tracer("test"),
        policy,
    )
    return LocalDispatcher(dispatcher, http, exporter)


def local_dispatcher_for(
    base_url: str, model: str, *, max_concurrency: int = 0, **changes: Any
) -> LocalDispatcher:
    """A dispatcher with one endpoint (any OpenAI-compatible base URL) serving one model."""
    endpoint = (
        f"endpoints:\n  - {{name: upstream, region: us-east, base_url: '{base_url}', "
        f"models: ['{model}'], max_concurrency: {max_concurrency}}}\n"
    )
    policy = dataclasses.replace(
        DispatchPolicy(local_region="us-east", attempt_timeout_s=60), **changes
    )
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    http = build_http_client(None)
    dispatcher = Dispatcher(
        parse_endpoints(endpoint, {}),
        OpenAICompatibleClient(http, token_counter(), env={}),
        load_catalogue(),
        provider.get_tracer("test"),
        policy,
    )
    return LocalDispatcher(dispatcher, http, exporter)

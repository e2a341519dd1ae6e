"""Builds simulator apps for tests: zero latency, a seeded RNG and a sleep that only records."""

from __future__ import annotations

import dataclasses
import functools
import random
from pathlib import Path
from typing import Any

import httpx
import orjson

from services.simulator.app import Simulation, build_app
from services.simulator.config import Settings
from services.simulator.replay import ReplayBook, load_replay_dir
from services.simulator.scenario import Scenario, load_scenario
from shared.tokens import TokenCounter

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "routerbench"
CHEAP = "Qwen/Qwen3-8B"
DEFAULT_MODELS = (
    "Qwen/Qwen3-8B",
    "deepseek-v4-flash",
    "deepseek-reasoner",
    "gpt-4o",
    "claude-haiku-4-5",
    "claude-sonnet-4-5",
)


@functools.cache
def token_counter() -> TokenCounter:
    """One encoding load for the whole test session (it takes a moment)."""
    return TokenCounter()


class RecordingSleep:
    """Stands in for asyncio.sleep: returns at once and remembers every requested delay."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def default_scenario(**changes: Any) -> Scenario:
    return dataclasses.replace(load_scenario(), **changes)


def replay_book() -> ReplayBook:
    return load_replay_dir(FIXTURES)


def make_client(
    scenario: Scenario | None = None,
    *,
    replay: ReplayBook | None = None,
    latency_scale: float = 0.0,
    seed: int = 7,
    sleep: RecordingSleep | None = None,
) -> httpx.AsyncClient:
    """An httpx client wired to a fresh in-process app; no sockets."""
    app = build_app(
        Settings(latency_scale=latency_scale),
        Simulation(scenario or load_scenario(), replay),
        rng=random.Random(seed),
        sleep=sleep or RecordingSleep(),
        tokens=token_counter(),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim")


def chat_body(prompt: str, model: str = "gpt-4o", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], **extra}


async def chat(
    client: httpx.AsyncClient,
    prompt: str,
    model: str = "gpt-4o",
    region: str = "us-east",
    **extra: Any,
) -> httpx.Response:
    return await client.post(
        f"/{region}/v1/chat/completions", json=chat_body(prompt, model, **extra)
    )


def sse_payloads(body: str) -> list[Any]:
    """The `data:` payloads of an SSE body, JSON-decoded except the final "[DONE]"."""
    events = [event for event in body.split("\n\n") if event]
    payloads: list[Any] = []
    for event in events:
        assert event.startswith("data: "), event
        data = event.removeprefix("data: ")
        payloads.append(data if data == "[DONE]" else orjson.loads(data))
    return payloads

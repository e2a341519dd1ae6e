"""The router's two front doors in process, over a pipeline that answers at once: what is under
test is what the doors accept, refuse and say, not the request path behind them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import cast

import grpc
import httpx
from opentelemetry import trace
from sluice.router.v1 import router_service_pb2_grpc as pb_grpc
from starlette.applications import Starlette

from services.router.admission import Admission
from services.router.http_api import FrontDoor, build_http_app
from services.router.http_limits import DoorLimits
from services.router.model import ChatRequest, RouteResult, TierDelta
from services.router.pipeline import Pipeline
from services.router.policy import Policy, parse_policy
from services.router.servicer import RouterServicer
from shared.chat import Choice, Finish
from shared.pricing import PriceCatalogue, TokenUsage, parse_catalogue
from shared.tokens import TokenCounter
from tests.unit.router.fixtures import CATALOGUE_DOC, policy_doc

API_KEY = "acme-key"
HEADERS = {"authorization": f"Bearer {API_KEY}"}


def door_catalogue() -> PriceCatalogue:
    """The test catalogue, where only `top` takes images and Anthropic's top_k."""
    models = dict(CATALOGUE_DOC["models"])
    models["top"] = {**models["top"], "images": True, "top_k": True}
    return parse_catalogue({"models": models})


def policy() -> Policy:
    """Tenant acme's classes: `chat` (cheap, mid, top) and `vision` (top only, takes images)."""
    doc = policy_doc()
    doc["tenants"]["acme"]["model_classes"]["vision"] = {
        "max_tokens": 64,
        "tiers": [{"model": "top", "gates": ["finish_reason"]}],
    }
    return parse_policy(doc, door_catalogue())


def result_for(request: ChatRequest, choices: Sequence[Choice] = (), tier: int = 1) -> RouteResult:
    """The pipeline's summary for `request`: "ok", or the given choices."""
    first = choices[0] if choices else Choice(0, "ok", Finish.STOP)
    return RouteResult(
        request_id=request.request_id,
        content=first.content,
        finish=first.finish,
        model=request.model_class.tiers[tier - 1].model,
        tier=tier,
        region="local",
        usage=TokenUsage(request.prompt_tokens, 1),
        lines=(),
        baseline_model="top",
        baseline_cost_nano_usd=0,
        cache_hit=False,
        policy_version=request.policy_version,
        choices=tuple(choices),
    )


Script = Callable[[ChatRequest], Sequence[TierDelta | RouteResult]]


class ScriptedPipeline:
    """Records each admitted request and answers it with the events `script` gives for it."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[ChatRequest] = []

    async def run(
        self, request: ChatRequest, deadline: float, stream: bool = False
    ) -> AsyncIterator[TierDelta | RouteResult]:
        self.requests.append(request)
        for event in self.script(request):
            if stream or isinstance(event, RouteResult):
                yield event

    async def drain(self, timeout_s: float) -> None:
        return None

    def find_copy(self, request: ChatRequest, key: str = "") -> None:
        """No router copies: every request runs the pipeline."""
        return None


class InstantPipeline:
    """Answers every admitted request with "ok", or raises `failure` when one is set."""

    def __init__(self, failure: BaseException | None = None) -> None:
        self.failure = failure

    async def run(
        self, request: ChatRequest, deadline: float, stream: bool = False
    ) -> AsyncIterator[TierDelta | RouteResult]:
        if self.failure is not None:
            raise self.failure
        if stream:
            yield TierDelta(attempt=0, tier=request.model_class.tiers[-1].index, text="ok")
        yield RouteResult(
            request_id=request.request_id,
            content="ok",
            finish=Finish.STOP,
            model=request.model_class.tiers[0].model,
            tier=1,
            region="local",
            usage=TokenUsage(request.prompt_tokens, 1),
            lines=(),
            baseline_model="top",
            baseline_cost_nano_usd=0,
            cache_hit=False,
            policy_version=request.policy_version,
        )

    async def drain(self, timeout_s: float) -> None:
        return None

    def find_copy(self, request: ChatRequest, key: str = "") -> None:
        """No router copies: every request runs the pipeline."""
        return None


def admission(max_prompt_tokens: int = 10_000) -> Admission:
    return Admission(policy(), TokenCounter(), max_prompt_tokens, catalogue=door_catalogue())


def door_app(
    pipeline: InstantPipeline | ScriptedPipeline | None = None,
    limits: DoorLimits | None = None,
    max_prompt_tokens: int = 10_000,
    tracer: trace.Tracer | None = None,
) -> Starlette:
    door = FrontDoor(
        admission(max_prompt_tokens),
        cast(Pipeline, pipeline or InstantPipeline()),
        policy(),
        tracer or trace.get_tracer("tests"),
        30.0,
    )
    return build_http_app(door, limits)


def http_client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://door", timeout=30
    )


@asynccontextmanager
async def grpc_door(
    pipeline: InstantPipeline | ScriptedPipeline | None = None, max_prompt_tokens: int = 10_000
) -> AsyncIterator[grpc.aio.Channel]:
    """A real grpc.aio server with the router's servicer on a loopback port; yields a channel."""
    server = grpc.aio.server()
    servicer = RouterServicer(
        admission(max_prompt_tokens), cast(Pipeline, pipeline or InstantPipeline()), 30.0
    )
    pb_grpc.add_RouterServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)

"""The simulator's HTTP app: OpenAI-compatible routes per region, Anthropic's Messages API
beside them (messages.py), plus admin routes.

Request path of `POST /<region>/v1/chat/completions`: count it, answer 503 if the region is in
an outage, validate the body (400) and the model (404), draw a fault (500, 429, or a hang then
504), find the answer (rule, synthetic or recorded), wait out the latency model, then reply as
JSON or as an SSE stream.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from services.simulator.batch_api import BatchApi
from services.simulator.composer import Composed, Composer, prompt_tokens, whole_logprobs
from services.simulator.config import Settings
from services.simulator.faults import FaultKind, FaultModel, Sleep
from services.simulator.messages import MessagesApi
from services.simulator.parsing import parse_chat_request
from services.simulator.replay import ReplayBook, load_replay_dir
from services.simulator.request import BadRequest, ChatRequest
from services.simulator.scenario import RegionSpec, Scenario, ScenarioError, load_scenario
from services.simulator.state import SimulatorState
from services.simulator.streaming import stream_steps
from services.simulator.wire import DONE_EVENT, Reply, completion_body, error_body, models_body
from shared.pricing import TokenUsage, load_catalogue
from shared.tokens import TokenCounter

REGION_HEADER = "x-sluice-simulator-region"


@dataclass(frozen=True)
class Simulation:
    """What an app serves, loaded once at start."""

    scenario: Scenario
    replay: ReplayBook | None = None

    def model_names(self) -> list[str]:
        """Scenario models, then replay models (a replay model of the same name wins)."""
        replayed = list(self.replay.models) if self.replay else []
        return [*self.scenario.models, *(m for m in replayed if m not in self.scenario.models)]

    def serves(self, model: str) -> bool:
        return model in self.scenario.models or bool(self.replay and self.replay.serves(model))


def load_simulation(settings: Settings) -> Simulation:
    """Loads the scenario and replay data; every scenario model must be priced."""
    scenario = load_scenario(settings.scenario_file)
    catalogue = load_catalogue(settings.catalogue_file)
    unpriced = sorted(name for name in scenario.models if not catalogue.knows(name))
    if unpriced:
        raise ScenarioError(
            f"{settings.scenario_file}: models without a price in "
            f"{settings.catalogue_file}: {', '.join(unpriced)}"
        )
    replay = load_replay_dir(settings.replay_dir) if settings.replay_dir else None
    return Simulation(scenario, replay)


def _json(payload: Mapping[str, Any], status: int = 200, **headers: str) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


def _error(
    status: int, message: str, code: str, kind: str, param: str | None = None, **headers: str
) -> Response:
    return _json(error_body(message, code, kind, param), status, **headers)


def _fault_response(kind: FaultKind, region: RegionSpec) -> Response:
    where = f"region {region.name}"
    match kind:
        case FaultKind.OUTAGE:
            return _error(
                503, f"{where} is unavailable (simulated outage)", "outage", "server_error"
            )
        case FaultKind.ERROR:
            return _error(
                500, f"{where}: simulated internal error", "internal_error", "server_error"
            )
        case FaultKind.RATE_LIMIT:
            return _error(
                429,
                f"{where}: simulated rate limit, retry after {region.faults.retry_after_s}s",
                "rate_limit_exceeded",
                "rate_limit_error",
                **{"Retry-After": str(region.faults.retry_after_s)},
            )
        case FaultKind.TIMEOUT:
            return _error(504, f"{where}: simulated upstream timeout", "timeout", "server_error")
        case FaultKind.STREAM_CUT:
            # Drawn apart (FaultModel.cut) once a stream has started: it has no status to send.
            raise ValueError("a stream cut happens mid-stream, not as an error reply")


class SimulatorApi:
    """Route handlers; every dependency is a constructor argument."""

    def __init__(
        self,
        simulation: Simulation,
        state: SimulatorState,
        faults: FaultModel,
        tokens: TokenCounter,
        composer: Composer,
    ) -> None:
        self._simulation = simulation
        self._state = state
        self._faults = faults
        self._tokens = tokens
        self._composer = composer

    async def models(self, request: Request) -> Response:
        if request.path_params["region"] not in self._state.regions:
            return self._no_region(request.path_params["region"])
        return _json(models_body(self._simulation.model_names()))

    def _no_region(self, region: str) -> Response:
        known = ", ".join(self._state.regions)
        return _error(
            404,
            f"unknown region {region!r} (known: {known})",
            "region_not_found",
            "invalid_request_error",
        )

    async def chat(self, request: Request) -> Response:
        name = request.path_params["region"]
        region = self._state.regions.get(name)
        if region is None:
            return self._no_region(name)
        admitted = self._admit(region, await request.body())
        if isinstance(admitted, Response):
            return admitted
        fault = self._faults.roll(region.faults)
        if fault is not None:
            self._state.fault(name, admitted.model, fault)
            if fault is FaultKind.TIMEOUT:
                await self._faults.wait(region.faults.timeout_hang_s)
            return _fault_response(fault, region)
        composed = self._composer.compose(admitted)
        if composed is None:
            self._state.rejected(name, admitted.model)
            message = f"no recorded answer of {admitted.model!r} for this prompt"
            return _error(404, message, "no_recorded_answer", "invalid_request_error")
        self._state.answered(name, admitted.model)
        reply = self._reply(admitted, composed)
        headers = {REGION_HEADER: name}
        slow = self._faults.slow_factor(region.faults)
        if slow > 1.0:
            self._state.slowed(name, admitted.model)
        if admitted.stream:
            events = self._stream(region, reply, admitted, composed, slow)
            return StreamingResponse(events, media_type="text/event-stream", headers=headers)
        await self._faults.wait(
            slow
            * (
                self._faults.ttft_s(region.latency)
                + self._faults.per_token_s(region.latency) * composed.completion_tokens
            )
        )
        return _json(
            completion_body(reply, composed.choices, whole_logprobs(admitted, composed)), **headers
        )

    def _reply(self, chat: ChatRequest, composed: Composed) -> Reply:
        return Reply(
            completion_id=f"chatcmpl-sim-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=chat.model,
            usage=TokenUsage(prompt_tokens(self._tokens, chat), composed.completion_tokens),
            cost_usd=composed.cost_usd,
        )

    def _admit(self, region: RegionSpec, raw: bytes) -> ChatRequest | Response:
        """Counts the request and answers outages, bad bodies and unknown models."""
        try:
            chat: ChatRequest | None = parse_chat_request(raw)
            problem, param = "", None
        except BadRequest as error:
            chat, problem, param = None, str(error), error.param
        model = chat.model if chat is not None else None
        self._state.received(region.name, model)
        if region.faults.outage:
            self._state.fault(region.name, model, FaultKind.OUTAGE)
            return _fault_response(FaultKind.OUTAGE, region)
        if chat is None:
            self._state.rejected(region.name, None)
            return _error(400, problem, "invalid_request", "invalid_request_error", param)
        if not self._simulation.serves(chat.model):
            self._state.rejected(region.name, None)
            message = f"the model {chat.model!r} does not exist; GET models lists the served ones"
            return _error(404, message, "model_not_found", "invalid_request_error", "model")
        return chat

    async def _stream(
        self,
        region: RegionSpec,
        reply: Reply,
        chat: ChatRequest,
        composed: Composed,
        slow: float = 1.0,
    ) -> AsyncIterator[bytes]:
        steps = stream_steps(reply, composed, chat.top_logprobs, chat.include_usage)
        generated = max(1, sum(step.generated for step in steps))
        per_piece_s = (
            slow * self._faults.per_token_s(region.latency) * composed.completion_tokens / generated
        )
        finished = False
        cut = self._faults.cut(region.faults)
        try:
            await self._faults.wait(slow * self._faults.ttft_s(region.latency))
            for step in steps:
                if step.generated:
                    await self._faults.wait(per_piece_s)
                yield step.event
                if cut and step.generated:
                    self._state.fault(region.name, reply.model, FaultKind.STREAM_CUT)
                    finished = True  # ended by the fault, not by the client
                    return
            # Counted as finished before the last event: a client may close once it has [DONE].
            finished = True
            yield DONE_EVENT
        finally:
            if not finished:
                self._state.cancelled(region.name, reply.model)


class AdminApi:
    """Counters and run-time region patches, for tests and demos."""

    def __init__(self, state: SimulatorState) -> None:
        self._state = state

    async def stats(self, _: Request) -> Response:
        return _json(self._state.stats_json())

    async def reset(self, _: Request) -> Response:
        self._state.reset()
        return _json({"status": "reset"})

    async def regions(self, _: Request) -> Response:
        return _json({name: spec.as_json() for name, spec in self._state.regions.items()})

    async def patch_region(self, request: Request) -> Response:
        name = request.path_params["region"]
        if name not in self._state.regions:
            return _error(
                404, f"unknown region {name!r}", "region_not_found", "invalid_request_error"
            )
        try:
            patch = orjson.loads(await request.body())
        except orjson.JSONDecodeError as error:
            return _error(
                400, f"body is not valid JSON: {error}", "invalid_request", "invalid_request_error"
            )
        if not isinstance(patch, dict):
            return _error(
                400,
                "body must be a JSON object of region fields",
                "invalid_request",
                "invalid_request_error",
            )
        try:
            spec = self._state.patch_region(name, patch)
        except ScenarioError as error:
            return _error(400, str(error), "invalid_request", "invalid_request_error")
        return _json({name: spec.as_json()})


async def _http_error(_: Request, exc: Exception) -> Response:
    """Routing errors (unknown path, wrong method) in the same JSON shape as the API's own."""
    assert isinstance(exc, HTTPException)
    code = "not_found" if exc.status_code == 404 else "invalid_request"
    return _error(
        exc.status_code, exc.detail, code, "invalid_request_error", **dict(exc.headers or {})
    )


async def _healthz(_: Request) -> Response:
    return _json({"status": "ok"})


def build_app(
    settings: Settings,
    simulation: Simulation | None = None,
    *,
    rng: random.Random | None = None,
    sleep: Sleep = asyncio.sleep,
    tokens: TokenCounter | None = None,
) -> Starlette:
    """The simulator app; simulation is loaded from settings when not given."""
    simulation = simulation or load_simulation(settings)
    scale = (
        settings.latency_scale
        if settings.latency_scale is not None
        else simulation.scenario.latency_scale
    )
    faults = FaultModel(rng or random.Random(settings.seed), sleep, scale)
    tokens = tokens or TokenCounter()
    state = SimulatorState(simulation.scenario.regions, simulation.model_names())
    composer = Composer(simulation.scenario, simulation.replay, tokens)
    api = SimulatorApi(simulation, state, faults, tokens, composer)
    admin = AdminApi(state)
    messages = MessagesApi(state, faults, tokens, composer, simulation.serves)
    catalogue = load_catalogue(settings.catalogue_file)
    batches = BatchApi(simulation.scenario, composer, simulation.serves, state, tokens, catalogue)
    routes = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/admin/stats", admin.stats, methods=["GET"]),
        Route("/admin/reset", admin.reset, methods=["POST"]),
        Route("/admin/regions", admin.regions, methods=["GET"]),
        Route("/admin/regions/{region}", admin.patch_region, methods=["POST"]),
        Route("/{region}/v1/chat/completions", api.chat, methods=["POST"]),
        Route("/{region}/v1/messages", messages.create, methods=["POST"]),
        Route("/{region}/v1/models", api.models, methods=["GET"]),
        *batches.routes(),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})

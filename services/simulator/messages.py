"""`POST /<region>/v1/messages`: the simulator speaking Anthropic's Messages API, so the
dispatcher's `provider: anthropic` path is tested offline.

The request path is the chat endpoint's (app.py): count it, answer an outage, validate the body
(400) and the model (404), draw a fault, compose the answer with the same composer, wait out
the latency model, reply whole or as Anthropic's stream events. Errors use Anthropic's shape;
an outage is its 529 `overloaded_error`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from services.simulator.choices import apply_stop
from services.simulator.composer import Composer, prompt_tokens
from services.simulator.faults import FaultKind, FaultModel
from services.simulator.messages_wire import (
    Stopped,
    chat_body,
    error_body,
    message_body,
    stream_events,
)
from services.simulator.parsing import parse_chat_request
from services.simulator.request import BadRequest, ChatRequest
from services.simulator.scenario import RegionSpec
from services.simulator.state import SimulatorState
from shared.tokens import TokenCounter

_FAULTS = {
    FaultKind.OUTAGE: (529, "overloaded_error", "simulated outage"),
    FaultKind.ERROR: (500, "api_error", "simulated internal error"),
    FaultKind.RATE_LIMIT: (429, "rate_limit_error", "simulated rate limit"),
    FaultKind.TIMEOUT: (504, "timeout_error", "simulated upstream timeout"),
}


def _error(status: int, kind: str, message: str, **headers: str) -> Response:
    body = orjson.dumps(error_body(kind, message))
    return Response(body, status, headers, media_type="application/json")


def _fault(kind: FaultKind, region: RegionSpec) -> Response:
    status, error_type, what = _FAULTS[kind]
    headers = {"Retry-After": str(region.faults.retry_after_s)} if status == 429 else {}
    return _error(status, error_type, f"region {region.name}: {what}", **headers)


class MessagesApi:
    """The handler; it shares the chat endpoint's state, faults and composer."""

    def __init__(
        self,
        state: SimulatorState,
        faults: FaultModel,
        tokens: TokenCounter,
        composer: Composer,
        serves: Callable[[str], bool],
    ) -> None:
        self._state = state
        self._faults = faults
        self._tokens = tokens
        self._composer = composer
        self._serves = serves

    def _admit(
        self, region: RegionSpec, raw: bytes
    ) -> tuple[ChatRequest, tuple[str, ...]] | Response:
        try:
            body, stop = chat_body(orjson.loads(raw))
            chat: ChatRequest | None = parse_chat_request(body)
            problem = ""
        except (BadRequest, orjson.JSONDecodeError) as error:
            chat, stop, problem = None, (), str(error)
        self._state.received(region.name, chat.model if chat else None)
        if region.faults.outage:
            self._state.fault(region.name, chat.model if chat else None, FaultKind.OUTAGE)
            return _fault(FaultKind.OUTAGE, region)
        if chat is None:
            self._state.rejected(region.name, None)
            return _error(400, "invalid_request_error", problem)
        if not self._serves(chat.model):
            self._state.rejected(region.name, None)
            return _error(404, "not_found_error", f"model: {chat.model!r} is not served")
        return chat, stop

    async def create(self, request: Request) -> Response:
        name = request.path_params["region"]
        region = self._state.regions.get(name)
        if region is None:
            return _error(404, "not_found_error", f"unknown region {name!r}")
        admitted = self._admit(region, await request.body())
        if isinstance(admitted, Response):
            return admitted
        chat, stop = admitted
        fault = self._faults.roll(region.faults)
        if fault is not None and fault is not FaultKind.STREAM_CUT:
            self._state.fault(name, chat.model, fault)
            if fault is FaultKind.TIMEOUT:
                await self._faults.wait(region.faults.timeout_hang_s)
            return _fault(fault, region)
        composed = self._composer.compose(dataclasses.replace(chat, stop=()))
        if composed is None:
            self._state.rejected(name, chat.model)
            return _error(404, "not_found_error", f"no recorded answer of {chat.model!r}")
        self._state.answered(name, chat.model)
        stopped = self._stopped(composed.choices[0], stop)
        body = message_body(
            f"msg_sim_{uuid.uuid4().hex}",
            chat.model,
            stopped,
            prompt_tokens(self._tokens, chat),
            stopped.choice.completion_tokens,
        )
        if chat.stream:
            return StreamingResponse(self._stream(region, body), media_type="text/event-stream")
        latency = region.latency
        await self._faults.wait(
            self._faults.ttft_s(latency)
            + self._faults.per_token_s(latency) * stopped.choice.completion_tokens
        )
        return Response(orjson.dumps(body), media_type="application/json")

    def _stopped(self, choice: Any, stop: tuple[str, ...]) -> Stopped:
        cut = apply_stop(self._tokens, choice, stop)
        if cut is choice:
            return Stopped(choice, None)
        sequence = min(
            (s for s in stop if s in (choice.content or "")), key=(choice.content or "").find
        )
        return Stopped(cut, sequence)

    async def _stream(self, region: RegionSpec, body: Mapping[str, Any]) -> AsyncIterator[bytes]:
        events = stream_events(body)
        generated = max(1, sum(1 for _, output in events if output))
        per_piece_s = (
            self._faults.per_token_s(region.latency) * body["usage"]["output_tokens"] / generated
        )
        await self._faults.wait(self._faults.ttft_s(region.latency))
        for payload, output in events:
            if output:
                await self._faults.wait(per_piece_s)
            yield payload

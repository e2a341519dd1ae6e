"""The model client's mapping: packable, logprobs, tools, sampling and the end user on the way
out; logprobs, choices and stream pieces on the way back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any, cast

from sluice.batcher.v1 import batcher_service_pb2 as batcher_pb
from sluice.common.v1 import common_pb2
from sluice.dispatcher.v1 import dispatcher_service_pb2 as dispatcher_pb

from services.router.clients.batchers import BatcherReplicas
from services.router.clients.model import ModelClient
from services.router.gates import LogprobSummary
from services.router.model import TierAnswer
from shared.chat import (
    Choice,
    ChoiceDelta,
    Finish,
    FormatKind,
    ResponseFormat,
    Sampling,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    ToolChoiceMode,
    ToolFunction,
    ToolSet,
)
from shared.convert import response_format_from_proto, sampling_from_proto
from shared.convert_tools import choice_delta_to_proto, choices_to_proto, tools_from_proto
from tests.unit.router.learned_rig import chat_request


@dataclass
class RecordingBatcher:
    completion: common_pb2.Completion
    seen: list[batcher_pb.ExecuteRequest] = field(default_factory=list)

    async def Execute(
        self, request: batcher_pb.ExecuteRequest, **options: Any
    ) -> batcher_pb.ExecuteResponse:
        self.seen.append(request)
        return batcher_pb.ExecuteResponse(completion=self.completion)


@dataclass
class OneReplica:
    stub: RecordingBatcher

    def ranked(self, key: bytes) -> list[tuple[str, Any]]:
        return [("127.0.0.1:1", self.stub)]


def client(completion: common_pb2.Completion) -> tuple[ModelClient, RecordingBatcher]:
    batcher = RecordingBatcher(completion)
    replicas = cast(BatcherReplicas, OneReplica(batcher))
    return ModelClient(replicas, cast(Any, None), "127.0.0.1:2"), batcher


async def call(class_changes: dict[str, Any], tier_changes: dict[int, dict[str, Any]], **done):
    chat = chat_request(class_changes, tier_changes)
    models, batcher = client(common_pb2.Completion(content="B", model="cheap", **done))
    answer = await models.call(chat, chat.model_class.tiers[0], chat.turns, time.monotonic() + 5)
    return answer, batcher.seen[0]


async def test_a_packable_class_marks_its_calls_packable() -> None:
    _, sent = await call({"packable": True}, {})
    assert sent.packable and not sent.call.logprobs
    _, plain = await call({}, {})
    assert not plain.packable


async def test_a_logprob_gate_asks_for_logprobs_and_reads_their_summary() -> None:
    tier = {0: {"gates": ["logprob"], "min_mean_logprob": -0.5}}
    answer, sent = await call(
        {"packable": True},
        tier,
        logprobs_present=True,
        mean_token_logprob=-0.25,
        min_token_logprob=-1.5,
        logprob_tokens=3,
    )
    assert sent.call.logprobs
    # A packed call's answer is shared, so it has no logprobs of this request's own.
    assert not sent.packable
    assert answer.logprobs == LogprobSummary(-0.25, -1.5, 3)


async def test_an_answer_without_logprobs_has_no_summary() -> None:
    answer, _ = await call({}, {0: {"gates": ["logprob"], "min_token_logprob": -3}})
    assert answer.logprobs is None


def tool_request() -> Any:
    """A request that offers a tool and sets every sampling field the call must carry."""
    chat = chat_request({}, {})
    weather = ToolFunction("get_weather", "Weather in a city", WEATHER_SCHEMA, strict=True)
    return replace(
        chat,
        tools=ToolSet((weather,), ToolChoiceMode.FUNCTION, "get_weather", False),
        sampling=Sampling(
            seed=7,
            n=2,
            logprobs=True,
            top_logprobs=3,
            presence_penalty=0.5,
            frequency_penalty=-0.5,
            max_tokens=40,
        ),
        response_format=ResponseFormat(FormatKind.JSON_SCHEMA, WEATHER_SCHEMA, "weather", True),
        end_user="user-17",
    )


WEATHER_SCHEMA = '{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}'


async def test_the_call_carries_tools_every_sampling_field_and_the_end_user() -> None:
    chat = tool_request()
    models, batcher = client(common_pb2.Completion(content="", model="cheap"))
    await models.call(chat, chat.model_class.tiers[0], chat.turns, time.monotonic() + 5)
    sent = batcher.seen[0]
    assert tools_from_proto(sent.call.tools) == chat.tools
    assert sampling_from_proto(sent.call.sampling) == chat.sampling
    assert response_format_from_proto(sent.call.response_format) == chat.response_format
    assert sent.call.end_user == "user-17"
    # Tools, several choices and the caller's own logprobs are never packed with others.
    assert not sent.packable


async def test_an_answer_keeps_every_choice_and_a_plain_one_none() -> None:
    calls = (ToolCall("call_1", "get_weather", '{"city":"Lisbon"}'),)
    choices = (
        Choice(0, "", Finish.TOOL_CALLS, calls, logprobs=(TokenLogprob("x", -0.1),)),
        Choice(1, "", Finish.TOOL_CALLS, calls),
    )
    chat = chat_request({}, {})
    done = common_pb2.Completion(model="cheap", choices=choices_to_proto(choices))
    models, _ = client(done)
    answer = await models.call(chat, chat.model_class.tiers[0], chat.turns, time.monotonic() + 5)
    assert answer.choices == choices and answer.tool_calls == calls
    plain = common_pb2.Completion(
        content="B", model="cheap", choices=choices_to_proto([Choice(0, "B", Finish.STOP)])
    )
    models, _ = client(plain)
    answer = await models.call(chat, chat.model_class.tiers[0], chat.turns, time.monotonic() + 5)
    assert answer.choices == () and answer.content == "B"


class ScriptedStream:
    """A DispatchStream call that yields the given events."""

    def __init__(self, events: list[dispatcher_pb.DispatchStreamResponse]) -> None:
        self._events = events

    async def initial_metadata(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def __aiter__(self) -> AsyncIterator[dispatcher_pb.DispatchStreamResponse]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dispatcher_pb.DispatchStreamResponse]:
        for event in self._events:
            yield event
        self._events = []


@dataclass
class StreamingDispatcher:
    events: list[dispatcher_pb.DispatchStreamResponse]

    def DispatchStream(self, request: Any, **options: Any) -> ScriptedStream:
        return ScriptedStream(self.events)


async def test_a_stream_yields_text_pieces_and_the_answer() -> None:
    piece = ChoiceDelta(0, tool_calls=(ToolCallDelta(0, "call_1", "get_weather", ""),))
    events = [
        dispatcher_pb.DispatchStreamResponse(content_delta="Hel"),
        dispatcher_pb.DispatchStreamResponse(choice_delta=choice_delta_to_proto(piece)),
        dispatcher_pb.DispatchStreamResponse(
            completion=common_pb2.Completion(content="Hello", model="cheap")
        ),
    ]
    dispatcher = cast(Any, StreamingDispatcher(events))
    models = ModelClient(cast(BatcherReplicas, None), dispatcher, "127.0.0.1:2")
    chat = chat_request({}, {})
    tier = chat.model_class.tiers[0]
    got = [e async for e in models.stream(chat, tier, chat.turns, time.monotonic() + 5)]
    assert got[:2] == ["Hel", piece]
    assert isinstance(got[2], TierAnswer) and got[2].content == "Hello"

"""Tool-call answers through the cache's servicer: stored with every choice, served back only
to the same request with the same tools, never to a look-alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.common.v1 import common_pb2

from tests.unit.cache.fakes import HashingEmbedder
from tests.unit.cache.test_servicer import Served, lookup, serving, store

QUESTION = "what is the weather in oslo"
TOOLS = common_pb2.ToolSet(
    functions=[common_pb2.ToolFunction(name="get_weather", parameters_json='{"type": "object"}')]
)
CHOICE = common_pb2.Choice(
    index=0,
    finish_reason=common_pb2.FINISH_REASON_TOOL_CALLS,
    tool_calls=[common_pb2.ToolCall(id="call_1", name="get_weather", arguments='{"city":"Oslo"}')],
    logprobs=[common_pb2.TokenLogprob(token="x", logprob=-0.25)],
)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serving(HashingEmbedder()) as running:
        yield running


def with_tools(request, tools=TOOLS):
    request.tools.CopyFrom(tools)
    return request


def tool_call_answer() -> pb.StoreRequest:
    request = with_tools(store(QUESTION, content=""))
    request.finish_reason = common_pb2.FINISH_REASON_TOOL_CALLS
    request.choices.append(CHOICE)
    return request


async def test_a_tool_call_answer_round_trips_with_its_choices(served: Served) -> None:
    await served.stub.Store(tool_call_answer())
    found = await served.stub.Lookup(with_tools(lookup(QUESTION)))
    assert found.kind == pb.HIT_KIND_EXACT
    assert list(found.choices) == [CHOICE]


async def test_tools_are_part_of_the_key_and_never_matched_semantically(served: Served) -> None:
    await served.stub.Store(tool_call_answer())
    plain = await served.stub.Lookup(lookup(QUESTION))
    assert plain.kind == pb.HIT_KIND_MISS
    other_tools = common_pb2.ToolSet(functions=[common_pb2.ToolFunction(name="get_time")])
    assert (await served.stub.Lookup(with_tools(lookup(QUESTION), other_tools))).kind == (
        pb.HIT_KIND_MISS
    )
    look_alike = await served.stub.Lookup(with_tools(lookup(QUESTION + " please")))
    assert look_alike.kind == pb.HIT_KIND_MISS


async def test_an_answer_without_text_or_calls_is_still_refused(served: Served) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await served.stub.Store(with_tools(store(QUESTION, content="")))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "tool call" in (refused.value.details() or "")

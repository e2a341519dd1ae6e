"""The request path with tools and choices: the result carries the accepted answer's choices,
tool-call answers are stored with their tools, and a cached tool call is re-checked against the
request's tools before it is served."""

from __future__ import annotations

import time
from dataclasses import replace

from services.router.model import (
    CachedAnswer,
    ChatRequest,
    Outcome,
    RouteResult,
    StageName,
    TierDelta,
)
from services.router.pipeline import complete
from shared.chat import Choice, Finish, Sampling, ToolCall, ToolSet
from shared.pricing import TokenUsage
from tests.unit.router.fakes import FakeCache, FakeModels, answer
from tests.unit.router.test_cascade import request
from tests.unit.router.test_cascade_tools import TOOLS, calls_answer
from tests.unit.router.test_pipeline import build


def tool_request() -> ChatRequest:
    return replace(request(), tools=TOOLS)


async def answered(pipeline, chat: ChatRequest) -> RouteResult:
    result = await complete(pipeline, chat, time.monotonic() + 5)
    await pipeline.drain()
    return result


async def test_the_result_carries_the_accepted_tool_call_and_it_is_stored() -> None:
    models = FakeModels({"cheap": calls_answer("cheap", '{"city": "Oslo"}')})
    pipeline, cache = build(models)
    result = await answered(pipeline, tool_request())
    assert result.finish is Finish.TOOL_CALLS
    assert result.all_choices()[0].tool_calls == (
        ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),
    )
    # A complete tool-call answer is worth serving again to the same request.
    assert cache.stored and cache.stored[0].choices == result.choices


async def test_every_choice_reaches_the_result() -> None:
    choices = (Choice(0, "Paris.", Finish.STOP), Choice(1, "It is Paris.", Finish.STOP))
    models = FakeModels({"cheap": replace(answer("Paris.", "cheap"), choices=choices)})
    pipeline, _ = build(models)
    result = await answered(pipeline, replace(request(), sampling=Sampling(n=2)))
    assert result.all_choices() == choices


async def test_an_answer_with_a_cut_choice_is_not_stored() -> None:
    choices = (Choice(0, "Paris.", Finish.STOP), Choice(1, "It is", Finish.LENGTH))
    cut = replace(answer("Paris.", "top"), choices=choices)
    models = FakeModels({"cheap": cut, "mid": cut, "top": cut})
    pipeline, cache = build(models)
    await answered(pipeline, replace(request(), sampling=Sampling(n=2)))
    assert not cache.stored


def cached_call(arguments: str) -> CachedAnswer:
    calls = (ToolCall("call_1", "get_weather", arguments),)
    return CachedAnswer(
        "exact",
        "",
        "cheap",
        TokenUsage(10, 5),
        1.0,
        Finish.TOOL_CALLS,
        "e-1",
        (Choice(0, "", Finish.TOOL_CALLS, calls),),
    )


async def test_a_cached_tool_call_is_served_with_its_choices() -> None:
    pipeline, _ = build(FakeModels({}), cache=FakeCache(hit=cached_call('{"city": "Oslo"}')))
    result = await answered(pipeline, tool_request())
    assert result.cache_hit and result.all_choices()[0].tool_calls[0].name == "get_weather"


async def test_a_cached_tool_call_that_breaks_the_requests_schema_is_a_miss() -> None:
    models = FakeModels({"cheap": calls_answer("cheap", '{"city": "Oslo"}')})
    pipeline, _ = build(models, cache=FakeCache(hit=cached_call('{"town": "Oslo"}')))
    result = await answered(pipeline, tool_request())
    cache_line = next(x for x in result.lines if x.stage is StageName.CACHE)
    assert cache_line.outcome is Outcome.REJECTED
    assert "failed gate tool_call: schema" in cache_line.detail
    assert not result.cache_hit and models.calls == ["cheap"]
    # Against a request offering no tools at all, the same entry's call is not offered.
    text = FakeModels({"cheap": answer("It is sunny in Oslo.", "cheap")})
    pipeline, _ = build(text, cache=FakeCache(hit=cached_call('{"city": "Oslo"}')))
    result = await answered(pipeline, replace(request(), tools=ToolSet()))
    assert not result.cache_hit and result.content == "It is sunny in Oslo."


async def test_a_streamed_cache_hit_sends_its_tool_calls_whole() -> None:
    pipeline, _ = build(FakeModels({}), cache=FakeCache(hit=cached_call('{"city": "Oslo"}')))
    events = [e async for e in pipeline.run(tool_request(), time.monotonic() + 5, stream=True)]
    first = events[0]
    assert isinstance(first, TierDelta)
    piece = first.piece
    assert piece is not None and piece.tool_calls[0].arguments == '{"city": "Oslo"}'
    assert piece.tool_calls[0].id == "call_1"
    assert isinstance(events[-1], RouteResult)

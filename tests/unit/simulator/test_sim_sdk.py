"""The official `openai` SDK against the simulator (in process): its stream helpers reassemble
streamed tool calls, refusals and several choices, and plain streaming loops just work."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import httpx2
import jsonschema
import orjson
import pytest
from openai import AsyncOpenAI
from pydantic import BaseModel

from services.simulator.app import Simulation, build_app
from services.simulator.config import Settings
from services.simulator.scenario import load_scenario
from tests.unit.simulator.helpers import CHEAP, RecordingSleep, make_client, token_counter
from tests.unit.simulator.tools_fixtures import RECIPE_FORMAT, SCHEMAS, TOOLS

ASK_BOTH = "What is the weather in Lisbon, and the local time there?"
USER = [{"role": "user", "content": "Summarise the history of the printing press."}]


@pytest.fixture
async def sdk() -> AsyncIterator[AsyncOpenAI]:
    app = build_app(
        Settings(latency_scale=0.0),
        Simulation(load_scenario()),
        rng=random.Random(5),
        sleep=RecordingSleep(),
        tokens=token_counter(),
    )
    # The SDK's own HTTP stack (httpx2), so nothing but the transport differs from real use.
    transport = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app))
    client = AsyncOpenAI(base_url="http://sim/us-east/v1", api_key="unused", http_client=transport)
    yield client
    await client.close()


async def test_streamed_parallel_tool_calls_reassemble_with_parsed_arguments(sdk) -> None:
    messages = [{"role": "user", "content": ASK_BOTH}]
    async with sdk.chat.completions.stream(model="gpt-4o", messages=messages, tools=TOOLS) as s:
        final = await s.get_final_completion()
    whole = await sdk.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
    [choice] = final.choices
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == [
        c.function.name for c in whole.choices[0].message.tool_calls
    ]
    assert len(calls) == 2
    for call, plain in zip(calls, whole.choices[0].message.tool_calls, strict=True):
        assert call.id == plain.id
        assert call.function.arguments == plain.function.arguments
        jsonschema.validate(call.function.parsed_arguments, SCHEMAS[call.function.name])


async def test_a_tool_round_trip_through_the_sdk(sdk) -> None:
    messages: list = [{"role": "user", "content": ASK_BOTH}]
    first = await sdk.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
    assistant = first.choices[0].message
    messages.append(assistant.model_dump(exclude_none=True))
    for call in assistant.tool_calls:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": f"{call.id}: ok"})
    second = await sdk.chat.completions.create(model="gpt-4o", messages=messages, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert all(
        f"{call.id}: ok" in second.choices[0].message.content for call in assistant.tool_calls
    )


async def test_a_plain_streaming_loop_never_sees_an_empty_choices_list(sdk) -> None:
    stream = await sdk.chat.completions.create(model="gpt-4o", messages=USER, stream=True)
    pieces = [chunk.choices[0].delta.content or "" async for chunk in stream]
    whole = await sdk.chat.completions.create(model="gpt-4o", messages=USER)
    assert "".join(pieces) == whole.choices[0].message.content


async def test_include_usage_adds_a_last_chunk_with_the_usage(sdk) -> None:
    stream = await sdk.chat.completions.create(
        model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks[:-1])


async def test_n_streamed_choices_reassemble_per_index(sdk) -> None:
    async with sdk.chat.completions.stream(
        model="gpt-4o", messages=USER, n=2, temperature=1.0
    ) as stream:
        final = await stream.get_final_completion()
    whole = await sdk.chat.completions.create(model="gpt-4o", messages=USER, n=2, temperature=1.0)
    assert [c.message.content for c in final.choices] == [c.message.content for c in whole.choices]
    assert final.choices[0].message.content != final.choices[1].message.content


class Step(BaseModel):
    order: int
    text: str


async def test_parse_with_a_strict_json_schema_and_a_streamed_refusal(sdk) -> None:
    messages = [{"role": "user", "content": "A recipe, please."}]
    parsed = await sdk.chat.completions.parse(
        model="gpt-4o", messages=messages, response_format=Step
    )
    assert isinstance(parsed.choices[0].message.parsed, Step)
    refused = [{"role": "user", "content": "A recipe, please. [sim:refuse]"}]
    async with sdk.chat.completions.stream(
        model=CHEAP, messages=refused, response_format=RECIPE_FORMAT
    ) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.refusal == "I'm sorry, but I can't help with that."
    assert final.choices[0].message.content is None


async def test_streamed_logprobs_and_top_logprobs_match_the_whole_reply(sdk) -> None:
    kwargs = {"model": "gpt-4o", "messages": USER, "logprobs": True, "top_logprobs": 2}
    whole = await sdk.chat.completions.create(**kwargs)
    stream = await sdk.chat.completions.create(stream=True, **kwargs)
    streamed = [
        entry
        async for chunk in stream
        if chunk.choices and chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content
    ]
    assert streamed == whole.choices[0].logprobs.content
    assert all(len(entry.top_logprobs) == 2 for entry in streamed)


async def test_raw_tool_call_chunks_follow_openais_fragment_shape() -> None:
    async with make_client() as client:
        response = await client.post(
            "/us-east/v1/chat/completions",
            json={
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": ASK_BOTH}],
                "tools": TOOLS,
                "stream": True,
            },
        )
    events = [e.removeprefix("data: ") for e in response.text.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    fragments = [
        call
        for chunk in map(orjson.loads, events[:-1])
        for call in chunk["choices"][0]["delta"].get("tool_calls", [])
    ]
    heads = [f for f in fragments if "id" in f]
    assert [h["index"] for h in heads] == [0, 1]
    assert all(h["type"] == "function" and h["function"]["arguments"] == "" for h in heads)
    tails = [f for f in fragments if "id" not in f]
    assert tails and all(set(f) == {"index", "function"} for f in tails)
    assert all(set(f["function"]) == {"arguments"} for f in tails)

"""The official `openai` SDK against the front door of a real mesh (issue 15, Must show 6): the
README's examples as written, a tool round trip with two parallel calls, json_schema with
strict through `parse`, streaming loops with and without stream_options, streamed tool calls
reassembled by the SDK's stream helper, n=2, logprobs, models.retrieve; and the bad-input list
as 400s naming the field (INVALID_ARGUMENT over gRPC)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest
from pydantic import BaseModel
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as pb
from sluice.router.v1 import router_service_pb2_grpc as pb_grpc

from shared.mesh import Mesh

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"
README_URL = "http://127.0.0.1:8080/v1"


def fn(name: str, description: str, required: bool = True) -> Any:
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "the city's name"}},
        "required": ["city"] if required else [],
    }
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


WEATHER = fn("get_weather", "Current weather in a city")
TIME = fn("get_time", "Current local time in a city")


def fresh(text: str) -> str:
    """The text with a tag no earlier request had, so the cache cannot answer it."""
    return f"{text} (ref {uuid.uuid4().hex[:8]})"


@pytest.fixture
def client(mesh: Mesh) -> Iterator[openai.OpenAI]:
    url = f"http://{mesh.address('router_http')}/v1"
    with openai.OpenAI(base_url=url, api_key="dev", max_retries=0, timeout=60) as opened:
        yield opened


def readme_snippets() -> list[str]:
    section = README.read_text().split("## The OpenAI API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_examples_run_as_written(mesh: Mesh) -> None:
    snippets = readme_snippets()
    assert len(snippets) >= 4
    namespace: dict[str, Any] = {}
    printed = io.StringIO()
    url = f"http://{mesh.address('router_http')}/v1"
    for snippet in snippets:
        assert README_URL in snippet or "client." in snippet
        with contextlib.redirect_stdout(printed):
            exec(snippet.replace(README_URL, url), namespace)
    output = printed.getvalue()
    assert "Paris" in output and "cost avoided (USD):" in output
    assert "Lisbon" in output, "the tool round trip's answer quotes the tool result"
    assert namespace["parsed"].choices[0].message.parsed.country
    assert namespace["call"].function.name == "get_weather"


def test_a_tool_round_trip_with_two_parallel_calls(client: openai.OpenAI) -> None:
    messages: list[Any] = [
        {"role": "user", "content": fresh("What is the weather and the local time in Lisbon?")}
    ]
    first = client.chat.completions.create(model="auto", messages=messages, tools=[WEATHER, TIME])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert sorted(c.function.name for c in calls) == ["get_time", "get_weather"]  # type: ignore[union-attr]
    assert all(json.loads(c.function.arguments)["city"] for c in calls)  # type: ignore[union-attr]
    messages.append(
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]}
    )
    for call in calls:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": f"{call.id}: 21 C"})
    second = client.chat.completions.create(model="auto", messages=messages, tools=[WEATHER, TIME])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content and not second.choices[0].message.tool_calls


class Trip(BaseModel):
    city: str
    days: int
    sights: list[str]


def test_json_schema_with_strict_parses_into_a_pydantic_object(client: openai.OpenAI) -> None:
    parsed = client.chat.completions.parse(
        model="auto",
        messages=[{"role": "user", "content": fresh("Plan a trip to Porto.")}],
        response_format=Trip,
    )
    trip = parsed.choices[0].message.parsed
    assert isinstance(trip, Trip) and trip.days >= 0


def test_a_plain_streaming_loop_never_meets_empty_choices(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="auto",
        stream=True,
        messages=[{"role": "user", "content": fresh("Explain write-ahead logs.")}],
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text


def test_a_streaming_loop_with_include_usage_ends_with_the_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="auto",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": fresh("Explain consensus.")}],
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert all(chunk.choices and chunk.usage is None for chunk in chunks[:-1])


def test_streamed_tool_calls_are_reassembled_by_the_sdk_helper(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="auto",
        messages=[{"role": "user", "content": fresh("What is the weather in Lisbon?")}],
        tools=[WEATHER],
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather"]
    assert json.loads(calls[0].function.arguments)["city"] == "Lisbon"
    assert final.choices[0].finish_reason == "tool_calls"


def test_n_2_returns_two_choices(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="auto",
        n=2,
        temperature=0.8,
        messages=[{"role": "user", "content": fresh("Name a colour.")}],
    )
    assert [c.index for c in completion.choices] == [0, 1]
    assert all(c.message.content for c in completion.choices)


def test_logprobs_come_back_per_token(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="auto",
        logprobs=True,
        top_logprobs=2,
        messages=[{"role": "user", "content": fresh("Say hello.")}],
    )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert all(entry.logprob <= 0 and len(entry.top_logprobs) == 2 for entry in logprobs.content)


def test_models_retrieve(client: openai.OpenAI) -> None:
    assert client.models.retrieve("chat").id == "chat"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


USER: Any = {"role": "user", "content": "What is the weather in Lisbon?"}
IMAGE: Any = {
    "role": "user",
    "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ],
}
BAD_INPUT: list[tuple[dict[str, Any], str]] = [
    (
        {"messages": [USER], "tools": [{"type": "function", "function": {}}]},
        "tools[0].function.name",
    ),
    (
        {
            "messages": [USER],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}],
        },
        "tools[0].function.parameters",
    ),
    (
        {"messages": [USER, {"role": "tool", "tool_call_id": "call_x", "content": "21"}]},
        "messages[1].tool_call_id",
    ),
    ({"messages": [USER], "n": 9}, "n"),
    ({"messages": [IMAGE]}, "messages[0].content[1]"),
]


@pytest.mark.parametrize(("body", "param"), BAD_INPUT)
def test_bad_input_is_a_400_naming_the_field(
    client: openai.OpenAI, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="chat", **body)
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == param, error
    assert param in error["message"]


def test_an_image_names_the_model_that_cannot_take_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="chat", messages=[IMAGE])
    assert "model 'Qwen/Qwen3-8B' (tier 1 of model class 'chat') cannot take images" in str(
        caught.value
    )


def test_an_image_is_answered_by_the_vision_class_and_cached_exactly_only(
    client: openai.OpenAI,
) -> None:
    answer = client.chat.completions.with_raw_response.create(model="vision", messages=[IMAGE])
    assert answer.parse().choices[0].message.content
    assert answer.headers["x-sluice-cache"] == "miss"
    again = client.chat.completions.with_raw_response.create(model="vision", messages=[IMAGE])
    assert again.headers["x-sluice-cache"] == "hit"
    stages = again.parse().model_extra["sluice"]["stages"]  # type: ignore[index]
    assert stages[0]["detail"].startswith("exact hit"), stages[0]


GRPC_BAD_INPUT = [
    (
        pb.CompleteRequest(
            messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="hi")],
            tools=common_pb2.ToolSet(functions=[common_pb2.ToolFunction(parameters_json="{}")]),
        ),
        "tools[0].function.name",
    ),
    (
        pb.CompleteRequest(
            messages=[common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="hi")],
            sampling=common_pb2.SamplingParams(n=9),
        ),
        "n is 9",
    ),
    (
        pb.CompleteRequest(
            messages=[
                common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="hi"),
                common_pb2.ChatMessage(role=common_pb2.ROLE_TOOL, content="2", tool_call_id="x"),
            ]
        ),
        "messages[1].tool_call_id",
    ),
]


@pytest.mark.parametrize(("request_pb", "words"), GRPC_BAD_INPUT)
def test_bad_input_over_grpc_is_invalid_argument(
    mesh: Mesh, request_pb: pb.CompleteRequest, words: str
) -> None:
    with grpc.insecure_channel(mesh.address("router")) as channel:
        stub = pb_grpc.RouterServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Complete(request_pb, metadata=(("x-api-key", "dev"),), timeout=30)
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and words in error.details()

"""Answers in OpenAI's shape: every choice, tool calls with `content: null`, refusals, token
logprobs when asked, `finish_reason`; `GET /v1/models/{id}`; unknown paths and methods as
OpenAI-shaped 404/405s. Checked on the JSON and through the official SDK."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import pytest

from services.router.model import ChatRequest
from shared.chat import Choice, Finish, TokenLogprob, ToolCall, TopLogprob
from tests.unit.router.door_rig import (
    API_KEY,
    HEADERS,
    ScriptedPipeline,
    door_app,
    http_client,
    result_for,
)

USER: Any = [{"role": "user", "content": "weather in Lisbon and Porto?"}]
CALLS = (
    ToolCall("call_a", "get_weather", '{"city": "Lisbon"}'),
    ToolCall("call_b", "get_weather", '{"city": "Porto"}'),
)
LOGPROBS = (TokenLogprob("Hi", -0.25, None, (TopLogprob("Hi", -0.25), TopLogprob("Hey", -1.5))),)
CHOICES = (
    Choice(0, "", Finish.TOOL_CALLS, tool_calls=CALLS),
    Choice(1, "", Finish.STOP, refusal="I can't help with that."),
    Choice(2, "Hi", Finish.LENGTH, logprobs=LOGPROBS),
)


def answering(*choices: Choice) -> ScriptedPipeline:
    return ScriptedPipeline(lambda request: [result_for(request, choices)])


async def post(pipeline: ScriptedPipeline, **extra: Any) -> dict[str, Any]:
    async with http_client(door_app(pipeline)) as client:
        body = {"messages": USER, **extra}
        response = await client.post("/v1/chat/completions", json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_every_choice_is_rendered_in_openai_shape() -> None:
    data = await post(answering(*CHOICES), n=3)
    calls, refusal, text = data["choices"]
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert calls["finish_reason"] == "tool_calls"
    assert calls["message"]["content"] is None and calls["message"]["refusal"] is None
    assert calls["message"]["tool_calls"] == [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
        },
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Porto"}'},
        },
    ]
    assert refusal["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": "I can't help with that.",
    }
    assert text["message"]["content"] == "Hi" and text["finish_reason"] == "length"
    assert "tool_calls" not in text["message"]
    assert all(c["logprobs"] is None for c in data["choices"]), "logprobs were not asked for"
    assert data["sluice"]["tier"] == 1 and data["usage"]["completion_tokens"] == 1


async def test_logprobs_are_rendered_when_asked() -> None:
    data = await post(answering(*CHOICES), n=3, logprobs=True, top_logprobs=2)
    assert data["choices"][2]["logprobs"] == {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.25,
                "bytes": [72, 105],
                "top_logprobs": [
                    {"token": "Hi", "logprob": -0.25, "bytes": [72, 105]},
                    {"token": "Hey", "logprob": -1.5, "bytes": [72, 101, 121]},
                ],
            }
        ],
        "refusal": None,
    }
    assert data["choices"][0]["logprobs"] == {"content": [], "refusal": None}


async def test_a_text_answer_is_one_choice_with_null_refusal() -> None:
    pipeline = ScriptedPipeline(lambda request: [result_for(request)])
    data = await post(pipeline)
    assert data["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "ok", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]


def sdk(pipeline: ScriptedPipeline) -> openai.AsyncOpenAI:
    # The SDK's own HTTP stack (httpx2), so nothing but the transport differs from real use.
    transport = httpx2.ASGITransport(app=door_app(pipeline))
    return openai.AsyncOpenAI(
        base_url="http://door/v1",
        api_key=API_KEY,
        http_client=httpx2.AsyncClient(transport=transport),
        max_retries=0,
    )


async def test_the_sdk_reads_tool_calls_refusals_and_logprobs() -> None:
    client = sdk(answering(*CHOICES))
    completion = await client.chat.completions.create(
        model="auto",
        messages=USER,
        n=3,
        logprobs=True,
    )
    calls = completion.choices[0].message.tool_calls or []
    named = [(c.id, c.function.name) for c in calls]  # type: ignore[union-attr]
    assert named == [("call_a", "get_weather"), ("call_b", "get_weather")]
    assert completion.choices[1].message.refusal == "I can't help with that."
    logprobs = completion.choices[2].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert logprobs.content[0].top_logprobs[1].token == "Hey"


async def test_models_retrieve_returns_the_model_and_a_404_names_it() -> None:
    client = sdk(answering())
    assert (await client.models.retrieve("chat")).id == "chat"
    assert (await client.models.retrieve("auto")).owned_by == "sluice"
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("gpt-9")
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "model" and error["code"] == "model_not_found"
    assert "'gpt-9' does not exist" in error["message"]


async def test_models_retrieve_needs_a_key() -> None:
    async with http_client(door_app(answering())) as client:
        response = await client.get("/v1/models/chat")
    assert (
        response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"
    )


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/embeddings", 404, "unknown_url"),
        ("POST", "/v2/chat/completions", 404, "unknown_url"),
        ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
        ("DELETE", "/v1/models", 405, "method_not_allowed"),
    ],
)
async def test_unknown_paths_and_methods_are_openai_shaped(
    method: str, path: str, status: int, code: str
) -> None:
    async with http_client(door_app(answering())) as client:
        response = await client.request(method, path, headers=HEADERS)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    if status == 405:
        assert "allow" in response.headers


def recorded(pipeline: ScriptedPipeline) -> ChatRequest:
    assert len(pipeline.requests) == 1
    return pipeline.requests[0]


async def test_the_pipeline_gets_the_sdk_request() -> None:
    pipeline = answering()
    await sdk(pipeline).chat.completions.create(
        model="auto",
        messages=USER,
        seed=5,
        user="u-1",
        metadata={"k": "v"},
    )
    chat = recorded(pipeline)
    assert (chat.sampling.seed, chat.end_user, chat.metadata) == (5, "u-1", (("k", "v"),))

"""Token logprobs through the OpenAI-compatible client: asked for only when the call wants
them, summarised from stream chunks or a whole body, absent when the provider sends none."""

from dataclasses import replace

import httpx
import pytest

from services.dispatcher.calls import DispatchResult, LogprobSummary, ProviderAnswer
from services.dispatcher.endpoints import parse_endpoints
from services.dispatcher.providers.openai import OpenAICompatibleClient, request_body
from services.dispatcher.servicer import completion_to_proto
from shared.chat import Finish
from shared.pricing import TokenUsage
from tests.unit.dispatcher.upstream import CALL, TOKENS, chunk

(ENDPOINT,) = parse_endpoints(
    "endpoints:\n  - {name: e, region: r, base_url: 'http://x/v1', models: [m]}", {}
)
WANTS = replace(CALL, logprobs=True)


def logprobs(*values: float) -> dict:
    return {"content": [{"token": "t", "logprob": v, "top_logprobs": []} for v in values]}


def streamed(*choices: dict) -> bytes:
    events = [chunk({"model": "m", "choices": [choice]}) for choice in choices]
    return b"".join(events) + b"data: [DONE]\n\n"


async def answer_of(body: bytes | dict, call=WANTS) -> ProviderAnswer:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, dict):
            return httpx.Response(200, json=body)
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    events = [
        e async for e in OpenAICompatibleClient(http, TOKENS, env={}).stream(ENDPOINT, call, 5)
    ]
    final = events[-1]
    assert isinstance(final, ProviderAnswer)
    return final


def test_logprobs_are_asked_for_only_when_the_call_wants_them() -> None:
    assert request_body(WANTS, stream=True)["logprobs"] is True
    assert "logprobs" not in request_body(CALL, stream=True)


async def test_stream_chunks_are_summarised() -> None:
    body = streamed(
        {"delta": {"content": "Hel"}, "logprobs": logprobs(-0.5, -0.1)},
        {"delta": {"content": "lo"}, "logprobs": logprobs(-2.0)},
        {"delta": {}, "finish_reason": "stop", "logprobs": None},
    )
    answer = await answer_of(body)
    assert answer.content == "Hello"
    assert answer.logprobs is not None
    assert answer.logprobs.mean == pytest.approx(-2.6 / 3)
    assert (answer.logprobs.min, answer.logprobs.tokens) == (-2.0, 3)


async def test_a_whole_body_is_summarised() -> None:
    body = {
        "model": "m",
        "choices": [
            {"message": {"content": "B"}, "finish_reason": "stop", "logprobs": logprobs(-0.2)}
        ],
    }
    assert (await answer_of(body)).logprobs == LogprobSummary(-0.2, -0.2, 1)


@pytest.mark.parametrize("raw", [None, {"content": None}, {"content": [{"token": "x"}]}, "junk"])
async def test_missing_or_malformed_logprobs_give_no_summary(raw) -> None:
    body = streamed({"delta": {"content": "B"}, "finish_reason": "stop", "logprobs": raw})
    assert (await answer_of(body)).logprobs is None


async def test_logprobs_the_call_did_not_ask_for_are_ignored() -> None:
    body = streamed({"delta": {"content": "B"}, "finish_reason": "stop", "logprobs": logprobs(-1)})
    assert (await answer_of(body, CALL)).logprobs is None


def test_the_summary_reaches_the_completion_and_its_absence_too() -> None:
    answer = ProviderAnswer(
        "B", Finish.STOP, "m", TokenUsage(1, 1), logprobs=LogprobSummary(-0.5, -1.0, 2)
    )
    result = DispatchResult(answer, "e", "r", 10, 0.1, 1)
    completion = completion_to_proto(result)
    assert completion.logprobs_present
    assert (completion.mean_token_logprob, completion.min_token_logprob) == (-0.5, -1.0)
    assert completion.logprob_tokens == 2
    bare = completion_to_proto(replace(result, answer=replace(answer, logprobs=None)))
    assert not bare.logprobs_present and bare.logprob_tokens == 0

"""The dispatcher reads an OpenAI-compatible server exactly as the official `openai` SDK does.

The same tests run against the provider simulator and against a real llama.cpp server (marked
`llm`), so the simulator, the dispatcher and a real server cannot drift apart. llama.cpp's
quirks are asserted as facts about it, and the dispatcher is shown to cope with each: no usage
in streams (counted instead), any model name accepted, 500 for a malformed body (ours are built
from typed fields, so it never sees one), one request at a time (a concurrency limit of 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest
import pytest_asyncio

from services.dispatcher.calls import Delta, DispatchResult, ModelRequest
from services.dispatcher.dispatcher import Dispatcher
from shared.chat import Role, Sampling, Turn
from tests.e2e_llm.conftest import LlamaServer
from tests.integration.dispatch_rig import Simulator, local_dispatcher_for, running

MODEL = "Qwen/Qwen3-8B"
PROMPT = "What is the capital of France? Answer in one word."
MAX_TOKENS = 12


@dataclass(frozen=True)
class Upstream:
    name: str
    base_url: str
    # llama.cpp streams no usage and answers a malformed body with 500.
    streams_usage: bool
    malformed_status: int
    max_concurrency: int = 0


@pytest.fixture(scope="module")
def simulator_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    with running(tmp_path_factory.mktemp("format-sim"), "simulator") as mesh:
        sim = Simulator(f"http://{mesh.address('simulator')}")
        yield Upstream("simulator", f"{sim.url}/us-east/v1", True, 400)


@pytest.fixture(params=["simulator", pytest.param("llama", marks=pytest.mark.llm)])
def upstream(request: pytest.FixtureRequest) -> Upstream:
    if request.param == "simulator":
        found: Upstream = request.getfixturevalue("simulator_upstream")
        return found
    server: LlamaServer = request.getfixturevalue("llama_server")
    return Upstream("llama", server.base_url, False, 500, max_concurrency=1)


@pytest_asyncio.fixture(loop_scope="session")
async def dispatcher(upstream: Upstream) -> AsyncIterator[Dispatcher]:
    local = local_dispatcher_for(
        upstream.base_url, MODEL, max_concurrency=upstream.max_concurrency, attempt_timeout_s=120
    )
    yield local.dispatcher
    await local.http.aclose()


def sdk(upstream: Upstream) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=upstream.base_url, api_key="unused", max_retries=0)


def call() -> ModelRequest:
    return ModelRequest(
        MODEL, (Turn(Role.USER, PROMPT),), Sampling(temperature=0.0, max_tokens=MAX_TOKENS)
    )


async def test_a_whole_answer_reads_as_the_sdk_reads_it(
    upstream: Upstream, dispatcher: Dispatcher
) -> None:
    async with sdk(upstream) as client:
        reference = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=MAX_TOKENS,
            temperature=0.0,
        )
    result = await dispatcher.dispatch(call(), None)
    choice = reference.choices[0]
    assert result.answer.content == choice.message.content
    assert result.answer.finish.value == choice.finish_reason
    assert reference.usage is not None and reference.usage.completion_tokens > 0
    assert result.answer.usage.input_tokens > 0 and result.answer.usage.output_tokens > 0
    if upstream.streams_usage:
        assert result.answer.usage.output_tokens == reference.usage.completion_tokens


async def test_a_stream_reads_as_the_sdk_reads_it(
    upstream: Upstream, dispatcher: Dispatcher
) -> None:
    async with sdk(upstream) as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=MAX_TOKENS,
            temperature=0.0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    sdk_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    sdk_usage = next((c.usage for c in chunks if c.usage is not None), None)
    events = [e async for e in dispatcher.dispatch_stream(call(), None)]
    final = events[-1]
    assert isinstance(final, DispatchResult)
    deltas = [e.text for e in events if isinstance(e, Delta)]
    assert "".join(deltas) == sdk_text == final.answer.content
    assert final.ttft_s > 0 and final.answer.usage.output_tokens > 0
    if upstream.streams_usage:
        assert sdk_usage is not None
        assert final.answer.usage.output_tokens == sdk_usage.completion_tokens
    else:
        # The quirk: no usage in the stream, even when asked; the dispatcher counts tokens.
        assert sdk_usage is None


async def test_a_malformed_body_is_refused(upstream: Upstream) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{upstream.base_url}/chat/completions", json={"model": MODEL, "messages": "oops"}
        )
    # llama.cpp says 500, not 400: the dispatcher would take it for a server fault and fail
    # over, which is why it only ever sends bodies built from typed fields.
    assert response.status_code == upstream.malformed_status


@pytest.mark.llm
async def test_llama_serves_one_request_at_a_time_behind_a_limit_of_one(
    llama_server: LlamaServer,
) -> None:
    local = local_dispatcher_for(llama_server.base_url, MODEL, max_concurrency=1)
    most = 0

    async def watch() -> None:
        nonlocal most
        while True:
            most = max(most, local.dispatcher.stats()[0].in_flight)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        results = await asyncio.gather(*(local.dispatcher.dispatch(call(), None) for _ in range(3)))
    finally:
        watcher.cancel()
        await local.http.aclose()
    assert all(r.answer.content and r.attempts == 1 for r in results)
    assert most == 1, "the second and third call waited for a slot instead of piling on"

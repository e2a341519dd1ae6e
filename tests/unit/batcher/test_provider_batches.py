"""The Batch API client against the simulator's Batch API, in-process (no sockets): a job runs
end to end, its batch is found again by metadata, and bad JSONL is reported per item."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest

from services.batcher.job_runner import JobRunner, RunnerTiming
from services.batcher.jobs import ItemRequest, JobState
from services.batcher.provider_batches import EndpointTable, OpenAIBatchClient, ProviderError
from services.batcher.server import catalogue_price
from services.batcher.store import SqliteJobStore
from services.dispatcher.endpoints import Endpoint
from services.simulator.app import Simulation, build_app
from services.simulator.config import Settings
from services.simulator.scenario import load_scenario
from shared.chat import Role, Turn
from shared.pricing import load_catalogue
from shared.tokens import TokenCounter

ENDPOINT = Endpoint(
    name="sim-eu-west",
    provider="simulator",
    region="eu-west",
    base_url="http://sim/eu-west/v1",
    api_key_env="",
    models=frozenset({"gpt-4o", "Qwen/Qwen3-8B"}),
)


@pytest.fixture
def http() -> httpx.AsyncClient:
    app = build_app(
        Settings(latency_scale=0.0),
        Simulation(load_scenario()),
        rng=random.Random(1),
        tokens=TokenCounter(),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim")


def items(*prompts: str) -> list[ItemRequest]:
    return [
        ItemRequest(f"q{n}", "gpt-4o", (Turn(Role.USER, text),)) for n, text in enumerate(prompts)
    ]


async def run(tmp_path: Path, http: httpx.AsyncClient, jobs_items: list[ItemRequest]):
    await http.post("/admin/batches", json={"completion_delay_s": 0})
    runner = JobRunner(
        SqliteJobStore(tmp_path),
        OpenAIBatchClient(http, env={}),
        EndpointTable([ENDPOINT], "eu-west"),
        catalogue_price(load_catalogue()),
        RunnerTiming(poll_interval_s=0.01, max_backoff_s=0.05),
    )
    job, _ = runner.submit("tenant", "", jobs_items)
    await runner.settle(job.job_id)
    return runner.get("tenant", job.job_id)


async def test_a_job_runs_end_to_end_at_the_batch_price(tmp_path: Path, http: httpx.AsyncClient):
    async with http:
        done = await run(tmp_path, http, items("What is the capital of France?", "Explain DNS"))
        stats = (await http.get("/admin/batches")).json()
    assert done.state is JobState.COMPLETED
    assert done.results[0].content == "The capital of France is Paris."
    for result in done.results:
        assert abs(result.cost_nano_usd * 2 - result.interactive_cost_nano_usd) <= 1
    assert stats["batches_created"] == 1 and stats["requests_answered"] == 2


async def test_bad_jsonl_fails_only_the_affected_item(tmp_path: Path, http: httpx.AsyncClient):
    async with http:
        done = await run(tmp_path, http, items("fine", "broken [sim:batch-bad-line]", "also fine"))
    assert done.state is JobState.COMPLETED
    ok = [r.custom_id for r in done.results if r.ok]
    assert ok == ["q0", "q2"]
    assert "could not be read" in done.results[1].error


async def test_the_client_finds_an_earlier_upload_and_batch(http: httpx.AsyncClient):
    client = OpenAIBatchClient(http, env={})
    async with http:
        file_id = await client.upload(ENDPOINT, "sluice-job-7.jsonl", b'{"a": 1}\n')
        created = await client.create(ENDPOINT, file_id, "job-7")
        assert await client.find_file(ENDPOINT, "sluice-job-7.jsonl") == file_id
        assert await client.find_file(ENDPOINT, "sluice-job-8.jsonl") is None
        found = await client.find_batch(ENDPOINT, "job-7", 0.0)
        assert found is not None and found.id == created.id
        assert await client.find_batch(ENDPOINT, "job-8", 0.0) is None


async def test_errors_say_whether_a_retry_can_help(http: httpx.AsyncClient):
    client = OpenAIBatchClient(http, env={})
    async with http:
        with pytest.raises(ProviderError) as missing:
            await client.get(ENDPOINT, "batch-nope")
        await http.post("/admin/regions/eu-west", json={"outage": True})
        with pytest.raises(ProviderError) as outage:
            await client.get(ENDPOINT, "batch-nope")
    assert not missing.value.retryable and missing.value.status == 404
    assert outage.value.retryable and outage.value.status == 503


async def test_a_client_factory_is_called_once_on_the_first_call(http: httpx.AsyncClient):
    made: list[httpx.AsyncClient] = []

    def make() -> httpx.AsyncClient:
        made.append(http)
        return http

    client = OpenAIBatchClient(make, env={})
    assert made == []
    async with http:
        file_id = await client.upload(ENDPOINT, "sluice-job-9.jsonl", b'{"a": 1}\n')
        assert await client.find_file(ENDPOINT, "sluice-job-9.jsonl") == file_id
    assert made == [http]

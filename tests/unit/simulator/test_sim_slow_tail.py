"""The slow-tail fault: a share of answers wait slow_factor times longer, counted as `slowed`."""

from __future__ import annotations

import pytest

from tests.unit.simulator.helpers import RecordingSleep, chat, make_client, sse_payloads

PROMPT = "Name a prime number."
# A fixed 100 ms to the first token (median == p99) and no per-token time, so waits are exact.
FIXED = {"ttft_median_ms": 100, "ttft_p99_ms": 100, "per_token_ms": 0}


async def test_slow_answers_wait_slow_factor_times_longer():
    sleep = RecordingSleep()
    async with make_client(latency_scale=1.0, sleep=sleep) as client:
        await client.post("/admin/regions/us-east", json=FIXED)
        await chat(client, PROMPT)
        await client.post("/admin/regions/us-east", json={"slow_rate": 1.0, "slow_factor": 10})
        await chat(client, PROMPT)
        stats = (await client.get("/admin/stats")).json()["regions"]["us-east"]
    assert sleep.calls == [pytest.approx(0.1), pytest.approx(1.0)]
    assert stats["slowed"] == 1 and stats["answered"] == 2


async def test_streams_are_slowed_from_the_first_token():
    sleep = RecordingSleep()
    async with make_client(latency_scale=1.0, sleep=sleep) as client:
        await client.post(
            "/admin/regions/eu-west", json={**FIXED, "slow_rate": 1.0, "slow_factor": 4}
        )
        response = await chat(client, PROMPT, region="eu-west", stream=True)
    assert response.status_code == 200
    assert sleep.calls[0] == pytest.approx(0.4)


async def test_slow_rate_is_a_share_of_answers():
    async with make_client(seed=3) as client:
        await client.post("/admin/regions/ap-south", json={"slow_rate": 0.25})
        for _ in range(400):
            await chat(client, PROMPT, region="ap-south")
        stats = (await client.get("/admin/stats")).json()["regions"]["ap-south"]
    assert 70 <= stats["slowed"] <= 130


@pytest.mark.parametrize(
    ("patch", "problem"),
    [
        ({"slow_rate": 1.5}, "slow_rate=1.5 must be within [0, 1]"),
        ({"slow_factor": 0.5}, "slow_factor=0.5 must be within [1, inf]"),
    ],
)
async def test_bad_slow_tail_fields_are_rejected(patch, problem):
    async with make_client() as client:
        response = await client.post("/admin/regions/us-east", json=patch)
    assert response.status_code == 400
    assert problem in response.json()["error"]["message"]


async def test_stream_cut_stops_after_the_first_piece_without_done():
    async with make_client() as client:
        await client.post("/admin/regions/us-east", json={"stream_cut_rate": 1.0})
        cut = await chat(client, "Tell me a long story about rivers.", stream=True)
        whole = await chat(client, "Tell me a long story about rivers.")
        stats = (await client.get("/admin/stats")).json()["regions"]["us-east"]
    payloads = sse_payloads(cut.text)
    assert len(payloads) == 2 and "[DONE]" not in payloads
    assert payloads[1]["choices"][0]["finish_reason"] is None
    assert whole.status_code == 200, "only streams are cut"
    assert stats["faults"]["stream_cut"] == 1

"""Fault injection: outages, 500s, 429 with Retry-After, hangs, and admin patches."""

from __future__ import annotations

import dataclasses
import random
import statistics

import pytest

from services.simulator.faults import FaultKind, FaultModel
from services.simulator.scenario import FaultSpec, LatencySpec, load_scenario
from tests.unit.simulator.helpers import RecordingSleep, chat, default_scenario, make_client

PROMPT = "Draft a polite reminder email."


def _with_faults(region: str, **faults):
    scenario = load_scenario()
    spec = scenario.regions[region]
    patched = dataclasses.replace(spec, faults=dataclasses.replace(spec.faults, **faults))
    return default_scenario(regions={**scenario.regions, region: patched})


async def test_outage_answers_503_at_once_and_other_regions_still_serve():
    sleep = RecordingSleep()
    async with make_client(
        _with_faults("eu-west", outage=True), latency_scale=1.0, sleep=sleep
    ) as client:
        down = await chat(client, PROMPT, region="eu-west")
        # An outage answers before the body is even looked at.
        garbage = await client.post("/eu-west/v1/chat/completions", content=b"{not json")
        assert sleep.calls == []
        up = await chat(client, PROMPT, region="us-east")
    assert down.status_code == 503
    assert down.json()["error"]["type"] == "server_error"
    assert "eu-west" in down.json()["error"]["message"]
    assert garbage.status_code == 503
    assert up.status_code == 200


async def test_rate_limit_answers_429_with_retry_after():
    scenario = _with_faults("us-east", rate_limit_rate=1.0, retry_after_s=3)
    async with make_client(scenario) as client:
        response = await chat(client, PROMPT)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


async def test_error_rate_follows_the_seeded_rng():
    scenario = _with_faults("ap-south", error_rate=0.3)
    statuses = []
    async with make_client(scenario, seed=11) as client:
        for _ in range(200):
            statuses.append((await chat(client, PROMPT, region="ap-south")).status_code)
    # The same seed draws the same faults: replay the draws to know which requests failed.
    rng = random.Random(11)
    expected = [500 if rng.random() < 0.3 else 200 for _ in range(200)]
    assert statuses == expected
    assert 40 <= statuses.count(500) <= 80


async def test_timeout_hangs_for_the_configured_time_then_answers_504():
    sleep = RecordingSleep()
    scenario = _with_faults("us-east", timeout_rate=1.0, timeout_hang_s=12.5)
    async with make_client(scenario, sleep=sleep) as client:
        response = await chat(client, PROMPT, stream=True)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"
    # The hang is a fault, not latency: latency_scale (0 here) does not shorten it.
    assert sleep.calls == [12.5]


async def test_admin_patch_turns_faults_on_at_run_time_and_reset_clears_them():
    async with make_client() as client:
        assert (await chat(client, PROMPT, region="ap-south")).status_code == 200
        patched = await client.post("/admin/regions/ap-south", json={"outage": True})
        assert patched.status_code == 200
        assert patched.json()["ap-south"]["faults"]["outage"] is True
        assert (await chat(client, PROMPT, region="ap-south")).status_code == 503
        assert (await chat(client, PROMPT, region="us-east")).status_code == 200
        await client.post("/admin/regions/ap-south", json={"outage": False, "error_rate": 1.0})
        assert (await chat(client, PROMPT, region="ap-south")).status_code == 500
        regions = (await client.get("/admin/regions")).json()
        assert regions["ap-south"]["faults"]["error_rate"] == 1.0
        assert regions["us-east"]["faults"]["error_rate"] == 0.0
        assert (await client.post("/admin/reset")).status_code == 200
        assert (await chat(client, PROMPT, region="ap-south")).status_code == 200


async def test_admin_patch_can_change_latency():
    sleep = RecordingSleep()
    async with make_client(latency_scale=1.0, sleep=sleep) as client:
        await client.post(
            "/admin/regions/us-east",
            json={"ttft_median_ms": 500, "ttft_p99_ms": 500, "per_token_ms": 0},
        )
        await chat(client, PROMPT)
    assert sleep.calls == [pytest.approx(0.5)]


@pytest.mark.parametrize(
    ("patch", "problem"),
    [
        ({"error_rat": 0.5}, "unknown region field 'error_rat'"),
        ({"error_rate": 1.5}, "error_rate=1.5 must be within [0, 1]"),
        ({"error_rate": 0.6, "timeout_rate": 0.6}, "exceeds 1"),
        ({"outage": "yes"}, "outage='yes' is not true or false"),
        ({"ttft_p99_ms": 1}, "ttft_p99_ms must be at least ttft_median_ms"),
    ],
)
async def test_admin_patch_rejects_bad_fields_and_keeps_the_old_settings(patch, problem):
    async with make_client() as client:
        response = await client.post("/admin/regions/us-east", json=patch)
        assert response.status_code == 400
        assert problem in response.json()["error"]["message"]
        assert (await chat(client, PROMPT)).status_code == 200


async def test_admin_patch_of_unknown_region_or_non_object_body():
    async with make_client() as client:
        missing = await client.post("/admin/regions/mars", json={"outage": True})
        listed = await client.post("/admin/regions/us-east", json=[1, 2])
        broken = await client.post("/admin/regions/us-east", content=b"{")
    assert missing.status_code == 404
    assert listed.status_code == 400
    assert "JSON object" in listed.json()["error"]["message"]
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["error"]["message"]


def test_roll_stacks_the_rates_on_one_draw():
    faults = FaultModel(random.Random(5))
    spec = FaultSpec(error_rate=0.2, rate_limit_rate=0.3, timeout_rate=0.1)
    kinds = [faults.roll(spec) for _ in range(20_000)]
    assert kinds.count(FaultKind.ERROR) / 20_000 == pytest.approx(0.2, abs=0.015)
    assert kinds.count(FaultKind.RATE_LIMIT) / 20_000 == pytest.approx(0.3, abs=0.015)
    assert kinds.count(FaultKind.TIMEOUT) / 20_000 == pytest.approx(0.1, abs=0.015)
    assert kinds.count(None) / 20_000 == pytest.approx(0.4, abs=0.015)
    assert FaultModel(random.Random(5)).roll(FaultSpec(outage=True)) is FaultKind.OUTAGE
    assert FaultModel(random.Random(5)).roll(FaultSpec()) is None


def test_ttft_is_lognormal_with_the_configured_median_and_p99():
    faults = FaultModel(random.Random(9))
    latency = LatencySpec(ttft_median_ms=40, ttft_p99_ms=200, per_token_ms=1)
    samples = sorted(faults.ttft_s(latency) for _ in range(40_000))
    assert statistics.median(samples) == pytest.approx(0.040, rel=0.05)
    assert samples[int(0.99 * len(samples))] == pytest.approx(0.200, rel=0.1)
    assert faults.per_token_s(latency) == pytest.approx(0.001)
    assert FaultModel(random.Random(9), latency_scale=0).ttft_s(latency) == 0.0

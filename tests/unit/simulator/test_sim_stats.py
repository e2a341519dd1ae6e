"""Admin counters: received, answered, rejected and faults, per region and per model."""

from __future__ import annotations

from tests.unit.simulator.helpers import CHEAP, chat, make_client

PROMPT = "List three uses of graphene."
NO_FAULTS = {"outage": 0, "error": 0, "rate_limit": 0, "timeout": 0, "stream_cut": 0}


async def test_stats_count_requests_answers_rejections_and_faults():
    async with make_client() as client:
        await chat(client, PROMPT, model="gpt-4o", region="us-east")
        await chat(client, PROMPT, model="gpt-4o", region="us-east", stream=True)
        await chat(client, PROMPT, model=CHEAP, region="eu-west")
        await chat(client, PROMPT, model="no-such-model", region="eu-west")
        await client.post("/eu-west/v1/chat/completions", content=b"[]")
        await client.post("/admin/regions/ap-south", json={"outage": True})
        await chat(client, PROMPT, model=CHEAP, region="ap-south")
        await client.post("/admin/regions/ap-south", json={"outage": False, "rate_limit_rate": 1})
        await chat(client, PROMPT, model=CHEAP, region="ap-south")
        stats = (await client.get("/admin/stats")).json()

    regions, models = stats["regions"], stats["models"]
    assert regions["us-east"] == {
        "received": 2,
        "answered": 2,
        "rejected": 0,
        "faults": NO_FAULTS,
        "slowed": 0,
        "cancelled": 0,
    }
    assert regions["eu-west"] == {
        "received": 3,
        "answered": 1,
        "rejected": 2,
        "faults": NO_FAULTS,
        "slowed": 0,
        "cancelled": 0,
    }
    assert regions["ap-south"] == {
        "received": 2,
        "answered": 0,
        "rejected": 0,
        "faults": {"outage": 1, "error": 0, "rate_limit": 1, "timeout": 0, "stream_cut": 0},
        "slowed": 0,
        "cancelled": 0,
    }
    assert models["gpt-4o"]["received"] == 2
    assert models["gpt-4o"]["answered"] == 2
    assert models[CHEAP] == {
        "received": 3,
        "answered": 1,
        "rejected": 0,
        "faults": {"outage": 1, "error": 0, "rate_limit": 1, "timeout": 0, "stream_cut": 0},
        "slowed": 0,
        "cancelled": 0,
    }
    assert "no-such-model" not in models  # unknown names never grow the table
    assert models["deepseek-reasoner"]["received"] == 0


async def test_reset_zeroes_the_counters():
    async with make_client() as client:
        await chat(client, PROMPT)
        assert (await client.get("/admin/stats")).json()["regions"]["us-east"]["answered"] == 1
        await client.post("/admin/reset")
        stats = (await client.get("/admin/stats")).json()
    assert stats["regions"]["us-east"]["received"] == 0
    assert stats["models"]["gpt-4o"]["answered"] == 0


async def test_two_apps_never_share_state():
    async with make_client() as first, make_client() as second:
        await chat(first, PROMPT)
        await first.post("/admin/regions/us-east", json={"outage": True})
        assert (await chat(second, PROMPT)).status_code == 200
        stats = (await second.get("/admin/stats")).json()
    assert stats["regions"]["us-east"]["received"] == 1


async def test_healthz():
    async with make_client() as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}

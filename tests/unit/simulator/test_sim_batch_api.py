"""The simulated Batch API: upload, create, poll, fetch, at the batch price; list and cancel."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from services.simulator.batch_work import BAD_LINE_MARKER
from shared.pricing import TokenUsage, load_catalogue
from tests.unit.simulator.helpers import chat, make_client, token_counter

BASE = "/us-east/v1"


def line(custom_id: str, prompt: str, model: str = "gpt-4o", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": prompt}], **body},
    }


def jsonl(*lines: dict[str, Any]) -> bytes:
    return b"\n".join(orjson.dumps(item) for item in lines) + b"\n"


async def upload(client: httpx.AsyncClient, content: bytes, name: str = "in.jsonl") -> str:
    response = await client.post(
        f"{BASE}/files", data={"purpose": "batch"}, files={"file": (name, content)}
    )
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == name
    return str(response.json()["id"])


async def create(client: httpx.AsyncClient, file_id: str, **metadata: str) -> dict[str, Any]:
    response = await client.post(
        f"{BASE}/batches",
        json={
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": metadata,
        },
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def run_batch(client: httpx.AsyncClient, content: bytes) -> dict[str, Any]:
    await client.post("/admin/batches", json={"completion_delay_s": 0})
    batch = await create(client, await upload(client, content))
    return dict((await client.get(f"{BASE}/batches/{batch['id']}")).json())


def output_lines(content: bytes) -> dict[str, Any]:
    return {
        (parsed := orjson.loads(raw))["custom_id"]: parsed for raw in content.splitlines() if raw
    }


async def test_a_batch_answers_every_line_like_the_chat_endpoint_at_half_price():
    async with make_client() as client:
        done = await run_batch(client, jsonl(line("a", "Explain DNS"), line("b", "Explain TCP")))
        assert done["status"] == "completed"
        assert done["request_counts"] == {"total": 2, "completed": 2, "failed": 0}
        output = (await client.get(f"{BASE}/files/{done['output_file_id']}/content")).content
        interactive = (await chat(client, "Explain DNS")).json()
        stats = (await client.get("/admin/batches")).json()
    answers = output_lines(output)
    body = answers["a"]["response"]["body"]
    assert answers["a"]["response"]["status_code"] == 200
    assert body["choices"][0]["message"] == interactive["choices"][0]["message"]
    usage = body["usage"]
    assert usage["prompt_tokens"] == interactive["usage"]["prompt_tokens"]
    price = load_catalogue().price("gpt-4o", "us-east")
    billed = TokenUsage(usage["prompt_tokens"], usage["completion_tokens"])
    assert usage["cost"] * 1e9 == price.cost_nano_usd(billed, batch=True)
    assert abs(price.cost_nano_usd(billed, batch=True) * 2 - price.cost_nano_usd(billed)) <= 1
    assert stats["batches_created"] == 1 and stats["requests_answered"] == 2


async def test_a_batch_stays_in_progress_until_its_delay_has_passed():
    async with make_client() as client:
        await client.post("/admin/batches", json={"completion_delay_s": 60})
        batch = await create(client, await upload(client, jsonl(line("a", "hi"))))
        polled = (await client.get(f"{BASE}/batches/{batch['id']}")).json()
    assert batch["status"] == polled["status"] == "in_progress"
    assert polled["output_file_id"] is None


async def test_cancel_before_it_runs_leaves_no_output_and_nothing_is_answered():
    async with make_client() as client:
        await client.post("/admin/batches", json={"completion_delay_s": 60})
        batch = await create(client, await upload(client, jsonl(line("a", "hi"))))
        cancelled = (await client.post(f"{BASE}/batches/{batch['id']}/cancel")).json()
        stats = (await client.get("/admin/batches")).json()
    assert cancelled["status"] == "cancelled" and cancelled["output_file_id"] is None
    assert stats["batches_cancelled"] == 1 and stats["requests_answered"] == 0


async def test_failed_lines_go_to_the_error_file_and_bad_lines_are_malformed():
    content = jsonl(
        line("good", "fine"),
        line("unknown", "hi", model="no-such-model"),
        line("broken", f"please {BAD_LINE_MARKER}"),
    )
    async with make_client() as client:
        done = await run_batch(client, content)
        output = (await client.get(f"{BASE}/files/{done['output_file_id']}/content")).content
        errors = (await client.get(f"{BASE}/files/{done['error_file_id']}/content")).content
    assert done["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    assert output_lines(errors)["unknown"]["response"]["status_code"] == 404
    raw_lines = output.splitlines()
    assert len(raw_lines) == 2
    assert b'"custom_id":"good"' in raw_lines[0]
    assert not raw_lines[1].endswith(b"}"), "the marked line is cut, so not valid JSON"


async def test_an_invalid_input_file_fails_the_batch_with_an_error():
    async with make_client() as client:
        done = await run_batch(client, jsonl(line("a", "x"), line("a", "y")))
    assert done["status"] == "failed"
    assert "used twice" in done["errors"]["data"][0]["message"]


async def test_lists_find_files_by_name_and_batches_by_metadata_newest_first():
    async with make_client() as client:
        file_id = await upload(client, jsonl(line("a", "x")), name="sluice-job-1.jsonl")
        first = await create(client, file_id, sluice_job_id="job-1")
        second = await create(client, file_id, sluice_job_id="job-2")
        files = (await client.get(f"{BASE}/files", params={"purpose": "batch"})).json()
        page = (await client.get(f"{BASE}/batches", params={"limit": 1})).json()
        rest = (
            await client.get(f"{BASE}/batches", params={"limit": 1, "after": page["last_id"]})
        ).json()
        elsewhere = (await client.get("/eu-west/v1/batches")).json()
    assert [f["filename"] for f in files["data"]] == ["sluice-job-1.jsonl"]
    assert [b["id"] for b in page["data"]] == [second["id"]] and page["has_more"]
    assert [b["metadata"] for b in rest["data"]] == [{"sluice_job_id": "job-1"}]
    assert rest["data"][0]["id"] == first["id"] and not rest["has_more"]
    assert elsewhere["data"] == [], "each region is its own account"


async def test_bad_requests_are_rejected_with_openai_errors():
    async with make_client() as client:
        no_purpose = await client.post(f"{BASE}/files", files={"file": ("x.jsonl", b"{}")})
        no_file = await client.post(
            f"{BASE}/batches",
            json={
                "input_file_id": "file-x",
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
        bad_window = await client.post(
            f"{BASE}/batches", json={"input_file_id": "f", "endpoint": "/v1/chat/completions"}
        )
        missing = await client.get(f"{BASE}/batches/batch-nope")
        region = await client.get("/mars/v1/batches")
        delay = await client.post("/admin/batches", json={"completion_delay_s": -1})
    assert no_purpose.status_code == 400 and "purpose" in no_purpose.json()["error"]["message"]
    assert no_file.status_code == 404
    assert bad_window.status_code == 400
    assert missing.status_code == 404 and region.status_code == 404
    assert delay.status_code == 400


async def test_an_outage_takes_the_batch_api_down_too():
    async with make_client() as client:
        await client.post("/admin/regions/us-east", json={"outage": True})
        response = await client.get(f"{BASE}/batches")
    assert response.status_code == 503


async def test_token_counts_use_the_shared_counter():
    async with make_client() as client:
        done = await run_batch(client, jsonl(line("a", "Count me")))
        output = (await client.get(f"{BASE}/files/{done['output_file_id']}/content")).content
    usage = output_lines(output)["a"]["response"]["body"]["usage"]
    assert usage["prompt_tokens"] == token_counter().count_chat(["Count me"])

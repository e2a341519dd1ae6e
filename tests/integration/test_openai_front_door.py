"""The OpenAI-compatible front door on the router, through the real mesh."""

from __future__ import annotations

import uuid

import httpx
import orjson
import pytest

from shared.mesh import Mesh

pytestmark = pytest.mark.integration
DEV = {"authorization": "Bearer dev"}


def url(mesh: Mesh, path: str) -> str:
    return f"http://{mesh.address('router_http')}/v1{path}"


def test_chat_completion_is_openai_shaped_with_sluice_extras(mesh: Mesh) -> None:
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": f"Explain SSE ({uuid.uuid4().hex[:6]})"}],
    }
    response = httpx.post(url(mesh, "/chat/completions"), json=body, headers=DEV, timeout=30)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    assert (
        data["usage"]["total_tokens"]
        == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
    )
    extras = data["sluice"]
    assert extras["tier"] == 1 and len(extras["trace_id"]) == 32
    assert extras["cost_avoided_usd"] == pytest.approx(
        extras["baseline_cost_usd"] - extras["cost_usd"]
    )
    assert {s["stage"] for s in extras["stages"]} == {"cache", "compressor", "tier", "batcher"}
    assert response.headers["x-sluice-trace-id"] == extras["trace_id"]
    assert float(response.headers["x-sluice-cost-usd"]) == pytest.approx(extras["cost_usd"])
    assert response.headers["x-sluice-cache"] == "miss"


def sse(mesh: Mesh, body: dict) -> tuple[httpx.Headers, list[dict]]:
    with httpx.stream(
        "POST", url(mesh, "/chat/completions"), json=body, headers=DEV, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
        headers = response.headers
    assert lines[-1] == "data: [DONE]"
    return headers, [orjson.loads(line[6:]) for line in lines[:-1]]


@pytest.mark.parametrize("include_usage", [False, True])
def test_streaming_sends_chunks_then_finish_then_done(mesh: Mesh, include_usage: bool) -> None:
    body: dict = {
        "model": "chat",
        "stream": True,
        "messages": [
            {"role": "user", "content": f"Write a note [sim:refuse] {uuid.uuid4().hex[:6]}"}
        ],
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    headers, chunks = sse(mesh, body)
    with_choices = [c for c in chunks if c["choices"]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in with_choices)
    assert "I'm sorry" not in text, "the rejected tier-1 refusal is never streamed"
    assert text
    assert with_choices[0]["choices"][0]["delta"]["role"] == "assistant"
    final = with_choices[-1]
    assert final["choices"][0]["finish_reason"] == "stop" and final["sluice"]["tier"] == 2
    assert final["sluice"]["trace_id"] == headers["x-sluice-trace-id"]
    assert headers["x-sluice-policy-version"] == final["sluice"]["policy_version"]
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    else:
        assert chunks == with_choices, "no empty-choices chunk unless include_usage was asked"


def test_models_lists_the_tenant_model_classes(mesh: Mesh) -> None:
    response = httpx.get(url(mesh, "/models"), headers=DEV, timeout=10)
    assert response.status_code == 200
    assert {m["id"] for m in response.json()["data"]} == {
        "auto",
        "chat",
        "reasoning",
        "vision",
        "claude",
    }


def test_unknown_paths_and_models_are_openai_shaped_404s(mesh: Mesh) -> None:
    for path in ("/models/gpt-9", "/embeddings"):
        response = httpx.get(url(mesh, path), headers=DEV, timeout=10)
        assert response.status_code == 404
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        ({}, {"messages": [{"role": "user", "content": "hi"}]}, 401, "missing API key"),
        (
            {"authorization": "Bearer nope"},
            {"messages": [{"role": "user", "content": "hi"}]},
            401,
            "unknown API key",
        ),
        (DEV, {"messages": []}, 400, "messages must be a non-empty list"),
        (
            DEV,
            {"model": "poetry", "messages": [{"role": "user", "content": "hi"}]},
            400,
            "unknown model_class",
        ),
        (
            DEV,
            {"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"},
            400,
            "temperature must be a number",
        ),
    ],
)
def test_errors_are_openai_shaped(mesh: Mesh, headers, body, status: int, message: str) -> None:
    response = httpx.post(url(mesh, "/chat/completions"), json=body, headers=headers, timeout=10)
    assert response.status_code == status
    assert message in response.json()["error"]["message"]


def test_malformed_json_is_a_400(mesh: Mesh) -> None:
    response = httpx.post(url(mesh, "/chat/completions"), content=b"{nope", headers=DEV, timeout=10)
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]


def test_a_bad_key_on_a_stream_is_a_401_not_a_stream(mesh: Mesh) -> None:
    body = {"stream": True, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(
        url(mesh, "/chat/completions"), json=body, headers={"authorization": "Bearer x"}, timeout=10
    )
    assert response.status_code == 401 and "unknown API key" in response.json()["error"]["message"]

"""Bad requests: 400 naming the problem, 404 for unknown models, regions and paths."""

from __future__ import annotations

import orjson
import pytest

from tests.unit.simulator.helpers import chat, make_client

USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b"[1, 2]", "request body must be a JSON object"),
        (orjson.dumps({"messages": USER}), "'model' is required"),
        (orjson.dumps({"model": "gpt-4o"}), "'messages' is required"),
        (orjson.dumps({"model": "gpt-4o", "messages": []}), "'messages' must be a non-empty"),
        (orjson.dumps({"model": "gpt-4o", "messages": ["hi"]}), "messages[0] must be an object"),
        (orjson.dumps({"model": "gpt-4o", "messages": [{"content": "hi"}]}), "messages[0].role"),
        (
            orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": 3}]}),
            "messages[0].content must be a string",
        ),
        (orjson.dumps({"model": "gpt-4o", "messages": USER, "max_tokens": 0}), "'max_tokens'"),
        (
            orjson.dumps({"model": "gpt-4o", "messages": USER, "max_completion_tokens": "9"}),
            "'max_completion_tokens' must be a positive integer",
        ),
        (orjson.dumps({"model": "gpt-4o", "messages": USER, "temperature": 3}), "'temperature'"),
        (orjson.dumps({"model": "gpt-4o", "messages": USER, "stream": "yes"}), "'stream'"),
        (
            orjson.dumps({"model": "gpt-4o", "messages": USER, "stream_options": 1}),
            "'stream_options' must be an object",
        ),
    ],
)
async def test_malformed_requests_get_400_naming_the_problem(body, problem):
    async with make_client() as client:
        response = await client.post("/us-east/v1/chat/completions", content=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert problem in error["message"]
    assert error["type"] == "invalid_request_error"


async def test_unknown_model_is_404_model_not_found():
    async with make_client() as client:
        response = await chat(client, "hi", model="gpt-7")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert error["type"] == "invalid_request_error"
    assert "'gpt-7'" in error["message"]


async def test_unknown_region_is_404_for_chat_and_models():
    async with make_client() as client:
        chat_response = await chat(client, "hi", region="mars")
        models_response = await client.get("/mars/v1/models")
    for response in (chat_response, models_response):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "region_not_found"
        assert "us-east" in response.json()["error"]["message"]


async def test_unknown_path_and_wrong_method_get_json_errors():
    async with make_client() as client:
        missing = await client.get("/us-east/v2/whatever")
        wrong_method = await client.get("/us-east/v1/chat/completions")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.json()
    assert wrong_method.headers["allow"] == "POST"

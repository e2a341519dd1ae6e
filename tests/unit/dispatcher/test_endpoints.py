"""Endpoint YAML parsing with environment expansion."""

import pytest

from services.dispatcher.config import DEFAULT_ENDPOINTS
from services.dispatcher.endpoints import EndpointConfigError, load_endpoints, parse_endpoints

DOC = """
endpoints:
  - name: a
    region: us-east
    base_url: ${BASE:-http://127.0.0.1:1}/us-east/v1
    api_key_env: KEY_A
    models: [m1, m2]
"""


def test_env_references_expand_with_defaults() -> None:
    (endpoint,) = parse_endpoints(DOC, {})
    assert endpoint.chat_url == "http://127.0.0.1:1/us-east/v1/chat/completions"
    (endpoint,) = parse_endpoints(DOC, {"BASE": "https://api.example"})
    assert endpoint.base_url == "https://api.example/us-east/v1"
    assert endpoint.api_key({"KEY_A": "secret"}) == "secret"
    assert endpoint.models == {"m1", "m2"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("endpoints: []", "lists no endpoints"),
        ("nothing: 1", "needs an 'endpoints' list"),
        (
            "endpoints:\n  - name: a\n    region: r\n    models: [m]",
            r"endpoints\[0\] is missing 'base_url'",
        ),
        ("endpoints:\n  - {name: a, region: r, base_url: ftp://x, models: [m]}", "not an http"),
        (
            "endpoints:\n  - {name: a, region: r, base_url: 'http://${NOPE}', models: [m]}",
            "NOPE is not set",
        ),
        (
            "endpoints:\n  - {name: a, region: r, base_url: 'http://x', models: [m]}\n"
            "  - {name: a, region: s, base_url: 'http://y', models: [m]}",
            "duplicate endpoint names: a",
        ),
    ],
)
def test_bad_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(EndpointConfigError, match=message):
        parse_endpoints(text, {})


def test_shipped_endpoints_cover_three_regions() -> None:
    endpoints = load_endpoints(DEFAULT_ENDPOINTS, {})
    assert {e.region for e in endpoints} == {"us-east", "eu-west", "ap-south"}


def test_price_overrides_and_limits() -> None:
    text = """
endpoints:
  - name: llama
    region: local
    base_url: http://127.0.0.1:8080/v1
    models: [Qwen/Qwen3-8B]
    prices: {Qwen/Qwen3-8B: {input: 0, output: 0}}
    max_concurrency: 1
    rpm: 120
"""
    (endpoint,) = parse_endpoints(text, {})
    assert endpoint.max_concurrency == 1 and endpoint.rpm == 120
    price = endpoint.prices["Qwen/Qwen3-8B"]
    assert price.input_nano_per_mtok == 0 and price.output_nano_per_mtok == 0
    hash(endpoint)  # usable as a key although it holds a mapping


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("max_concurrency: -1", r"max_concurrency=-1 must be a whole number"),
        ("rpm: fast", r"rpm='fast' must be a whole number"),
        ("prices: {other: {input: 1, output: 1}}", "prices names models it does not serve"),
        ("prices: {m: {input: 1}}", "needs both 'input' and 'output'"),
        ("api_key: sk-123", r"unknown field\(s\): api_key"),
    ],
)
def test_bad_prices_and_limits_name_the_field(extra: str, message: str) -> None:
    head = "endpoints:\n  - name: a\n    region: r\n    base_url: http://x\n    models: [m]\n"
    text = f"{head}    {extra}"
    with pytest.raises(EndpointConfigError, match=message):
        parse_endpoints(text, {})


def test_repr_names_the_key_variable_not_the_key() -> None:
    (endpoint,) = parse_endpoints(DOC, {})
    env = {"KEY_A": "secret"}
    assert endpoint.api_key(env) == "secret"
    assert "secret" not in repr(endpoint) and "KEY_A" not in repr(endpoint)

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

"""Fuzzing with hypothesis: the request parser never lets bad input become a 5xx, every
rejection is a 400 naming the parameter, and generated JSON always fits its schema."""

from __future__ import annotations

import asyncio
from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.simulator.json_gen import generate
from tests.unit.simulator.helpers import make_client

FUZZ = settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

leaf = (
    st.none()
    | st.booleans()
    | st.integers(-3, 30)
    | st.floats(-3, 3, allow_nan=False)
    | st.text(max_size=6)
)
any_json = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def schemas(depth: int = 2) -> st.SearchStrategy[dict[str, Any]]:
    """Schemas of the kinds the generator claims to handle."""
    scalar = st.one_of(
        st.just({"type": "string"}),
        st.builds(lambda n: {"type": "string", "minLength": n}, st.integers(0, 12)),
        st.builds(
            lambda e: {"type": "string", "enum": e},
            st.lists(st.text(max_size=4), min_size=1, max_size=3, unique=True),
        ),
        st.builds(
            lambda lo, span: {"type": "integer", "minimum": lo, "maximum": lo + span},
            st.integers(-50, 50),
            st.integers(0, 20),
        ),
        st.builds(lambda lo: {"type": "number", "exclusiveMinimum": lo}, st.integers(-5, 5)),
        st.just({"type": "boolean"}),
        st.just({"type": ["string", "null"]}),
        st.just({"type": "string", "format": "date"}),
    )
    if depth == 0:
        return scalar
    inner = schemas(depth - 1)
    objects = st.builds(
        lambda props, extra: {
            "type": "object",
            "properties": props,
            "required": sorted(props)[: len(props) // 2 + 1] if props else [],
            **({"additionalProperties": False} if extra else {}),
        },
        st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), inner, max_size=4),
        st.booleans(),
    )
    arrays = st.builds(
        lambda items, low: {"type": "array", "items": items, "minItems": low},
        inner,
        st.integers(0, 4),
    )
    choice = st.builds(lambda a, b: {"anyOf": [a, b]}, inner, inner)
    return st.one_of(scalar, objects, arrays, choice)


@FUZZ
@given(schema=schemas(), seed=st.integers(0, 2**32), prompt=st.text(max_size=40))
def test_generated_json_always_fits_its_schema(schema: dict[str, Any], seed: int, prompt: str):
    document = generate(schema, seed, prompt)
    jsonschema.validate(document, schema)
    assert generate(schema, seed, prompt) == document


roles = st.sampled_from(["user", "system", "assistant", "tool", "developer", "x"]) | any_json
parts = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image_url", "refusal", "audio"])},
        optional={"text": st.text(max_size=8) | any_json, "image_url": any_json},
    ),
    max_size=3,
)
calls = st.lists(
    st.fixed_dictionaries(
        {"id": st.sampled_from(["call_1", "call_2"]) | any_json},
        optional={
            "type": st.just("function") | any_json,
            "function": st.fixed_dictionaries(
                {"name": st.just("get_weather") | any_json, "arguments": st.just("{}") | any_json}
            ),
        },
    ),
    max_size=2,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": roles},
        optional={
            "content": st.text(max_size=20) | parts | any_json,
            "tool_calls": calls | any_json,
            "tool_call_id": st.sampled_from(["call_1", "call_2"]) | any_json,
            "name": st.text(max_size=4) | any_json,
        },
    ),
    max_size=4,
)
tools = st.lists(
    st.fixed_dictionaries(
        {"type": st.just("function") | any_json},
        optional={
            "function": st.fixed_dictionaries(
                {"name": st.sampled_from(["get_weather", "bad name", "x" * 65]) | any_json},
                optional={
                    "parameters": schemas(1) | any_json,
                    "description": st.text(max_size=10) | any_json,
                    "strict": st.booleans() | any_json,
                },
            )
        },
    ),
    max_size=3,
)
response_formats = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "json_object", "json_schema", "yaml"])},
    optional={
        "json_schema": st.fixed_dictionaries(
            {"name": st.sampled_from(["answer", "bad name"]) | any_json},
            optional={"schema": schemas(1) | any_json, "strict": st.booleans() | any_json},
        )
    },
)
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["gpt-4o", "Qwen/Qwen3-8B"]) | any_json, "messages": messages},
    optional={
        "tools": tools | any_json,
        "tool_choice": st.sampled_from(["none", "auto", "required"])
        | st.just({"type": "function", "function": {"name": "get_weather"}})
        | any_json,
        "parallel_tool_calls": any_json,
        "response_format": response_formats | any_json,
        "n": st.integers(-1, 10) | any_json,
        "seed": any_json,
        "stop": st.lists(st.text(max_size=3), max_size=5) | any_json,
        "logprobs": any_json,
        "top_logprobs": st.integers(-1, 22) | any_json,
        "temperature": any_json,
        "max_tokens": st.integers(-1, 40) | any_json,
        "presence_penalty": any_json,
        "frequency_penalty": any_json,
        "user": any_json,
        "metadata": any_json,
        "stream": st.booleans() | any_json,
        "stream_options": st.fixed_dictionaries({"include_usage": any_json}) | any_json,
    },
)


def test_the_parser_answers_200_or_a_400_naming_the_parameter():
    loop = asyncio.new_event_loop()
    client = make_client()
    outcomes: set[int] = set()

    @FUZZ
    @given(body=bodies)
    def check(body: dict[str, Any]) -> None:
        response = loop.run_until_complete(client.post("/us-east/v1/chat/completions", json=body))
        outcomes.add(response.status_code)
        assert response.status_code in (200, 400, 404), response.text
        if response.status_code == 400:
            error = response.json()["error"]
            assert isinstance(error["param"], str) and error["param"], error
            assert error["type"] == "invalid_request_error"
        elif response.status_code == 404:
            assert response.json()["error"]["code"] == "model_not_found"

    try:
        check()
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
    # The strategies reach past validation too, not only into rejections.
    assert {200, 400} <= outcomes

"""Admission: authentication, validation and size limits before any work is done."""

from typing import Any

import pytest

from services.router.admission import Admission, Asked, api_key_from_metadata
from services.router.model import CacheMode
from shared.chat import FormatKind, ResponseFormat, Role, Sampling, Turn
from shared.errors import InvalidRequest, Unauthenticated
from shared.tokens import TokenCounter
from tests.unit.router.fixtures import policy

USER = (Turn(Role.USER, "hello there"),)


def admit(admission: Admission | None = None, **overrides: Any):
    args: dict[str, Any] = {
        "request_id": "",
        "model_class": "",
        "turns": USER,
        "sampling": Sampling(),
        "cache_mode": None,
        "max_cost_nano_usd": 0,
    }
    args.update(overrides)
    api_key = args.pop("api_key", "acme-key")
    return (admission or Admission(policy(), TokenCounter(), 1000)).admit(api_key, Asked(**args))


def test_metadata_keys() -> None:
    assert api_key_from_metadata([("x-api-key", "k1")]) == "k1"
    assert api_key_from_metadata([("authorization", "Bearer k2")]) == "k2"
    assert api_key_from_metadata([("authorization", "Basic abc")]) == ""
    assert api_key_from_metadata([("x-api-key", b"k3")]) == "k3"


def test_admits_with_defaults() -> None:
    request = admit()
    assert request.tenant.tenant_id == "acme"
    assert request.model_class.name == "chat"
    assert request.cache_mode is CacheMode.ENABLED
    assert len(request.request_id) == 32


def test_missing_key() -> None:
    with pytest.raises(Unauthenticated, match="missing API key"):
        admit(api_key="")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"turns": ()}, "messages is empty"),
        ({"turns": (Turn(Role.USER, "q"), Turn(Role.ASSISTANT, "a"))}, "last message must come"),
        ({"turns": (Turn(Role.USER, "  "),)}, r"messages\[0\].content is empty"),
        ({"model_class": "vision"}, "unknown model_class"),
        ({"sampling": Sampling(temperature=3.0)}, "temperature"),
        ({"sampling": Sampling(top_p=0.0)}, "top_p"),
        ({"sampling": Sampling(max_tokens=-1)}, "max_tokens"),
        ({"sampling": Sampling(stop=("a", "b", "c", "d", "e"))}, "stop"),
        ({"max_cost_nano_usd": -5}, "max_cost"),
        (
            {"response_format": ResponseFormat(FormatKind.JSON_SCHEMA, "{nope")},
            "response_format.json_schema is not JSON",
        ),
        (
            {"response_format": ResponseFormat(FormatKind.JSON_SCHEMA, '{"type": 12}')},
            "response_format.json_schema is not a valid schema",
        ),
    ],
)
def test_invalid_requests_name_the_problem(overrides: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        admit(**overrides)


def test_oversized_prompt_is_rejected_with_its_size() -> None:
    huge = (Turn(Role.USER, "word " * 5000),)
    with pytest.raises(
        InvalidRequest,
        match=r"request too large: the prompt has \d+ tokens, over the limit of 1000",
    ):
        admit(turns=huge)

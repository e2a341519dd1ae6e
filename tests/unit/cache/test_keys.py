"""Exact and namespace keys: what changes them and what does not."""

from __future__ import annotations

import dataclasses

import pytest

from services.cache.keys import request_keys
from shared.chat import Role, Sampling, Turn
from shared.errors import InvalidRequest

SYSTEM = Turn(Role.SYSTEM, "You are terse.")
FIRST = Turn(Role.USER, "Hi")
REPLY = Turn(Role.ASSISTANT, "Hello!")
LAST = Turn(Role.USER, "What is the capital of France?")
TURNS = (SYSTEM, FIRST, REPLY, LAST)
SAMPLING = Sampling(temperature=0.2, top_p=0.9, max_tokens=128, stop=("\n\n",))


def keys(
    tenant: str = "acme",
    model_class: str = "small",
    turns: tuple[Turn, ...] = TURNS,
    sampling: Sampling = SAMPLING,
):
    return request_keys(tenant, model_class, turns, sampling)


def test_keys_are_deterministic_hex_digests():
    first, second = keys(), keys()
    assert first == second
    assert len(first.exact) == 64 and int(first.exact, 16) >= 0
    assert first.exact != first.namespace
    assert first.query == LAST.content


@pytest.mark.parametrize(
    "changed",
    [
        {"tenant": "globex"},
        {"model_class": "large"},
        {"turns": (SYSTEM, FIRST, REPLY, Turn(Role.USER, "What is the capital of Spain?"))},
        {"turns": (Turn(Role.SYSTEM, "You are verbose."), FIRST, REPLY, LAST)},
        {"turns": (SYSTEM, FIRST, Turn(Role.ASSISTANT, "Hey!"), LAST)},
        {"turns": (SYSTEM, FIRST, REPLY, Turn(Role.USER, LAST.content, name="bob"))},
        {"turns": (SYSTEM, REPLY, LAST)},
        {"sampling": dataclasses.replace(SAMPLING, temperature=0.3)},
        {"sampling": dataclasses.replace(SAMPLING, temperature=None)},
        {"sampling": dataclasses.replace(SAMPLING, top_p=1.0)},
        {"sampling": dataclasses.replace(SAMPLING, max_tokens=256)},
        {"sampling": dataclasses.replace(SAMPLING, stop=())},
    ],
)
def test_exact_key_changes_with_every_field(changed):
    assert keys(**changed).exact != keys().exact


def test_unset_temperature_differs_from_zero():
    unset = keys(sampling=Sampling(temperature=None))
    zero = keys(sampling=Sampling(temperature=0.0))
    assert unset.exact != zero.exact
    assert unset.namespace != zero.namespace


def test_namespace_ignores_only_the_last_user_turn_text():
    paraphrase = (SYSTEM, FIRST, REPLY, Turn(Role.USER, "Tell me France's capital"))
    assert keys(turns=paraphrase).namespace == keys().namespace
    assert keys(turns=paraphrase).query == "Tell me France's capital"


@pytest.mark.parametrize(
    "changed",
    [
        {"tenant": "globex"},
        {"model_class": "large"},
        {"sampling": dataclasses.replace(SAMPLING, max_tokens=256)},
        {"turns": (Turn(Role.SYSTEM, "You are verbose."), FIRST, REPLY, LAST)},
        {"turns": (SYSTEM, Turn(Role.USER, "Hello"), REPLY, LAST)},
        {"turns": (SYSTEM, FIRST, REPLY, Turn(Role.USER, LAST.content, name="bob"))},
        {"turns": (SYSTEM, LAST)},
    ],
)
def test_namespace_changes_with_everything_before_the_last_user_turn(changed):
    assert keys(**changed).namespace != keys().namespace


def test_tenants_never_share_a_namespace():
    assert keys(tenant="acme").namespace != keys(tenant="acme2").namespace
    # Field boundaries are part of the document, so shifting text between fields cannot collide.
    assert keys(tenant="a", model_class="bsmall").namespace != keys(tenant="ab").namespace


def test_turns_after_the_last_user_turn_stay_in_the_namespace():
    prefill = Turn(Role.ASSISTANT, "Sure:")
    with_prefill = keys(turns=(*TURNS, prefill))
    assert with_prefill.query == LAST.content
    assert with_prefill.namespace != keys().namespace


def test_request_without_user_turn_has_no_query():
    only_system = keys(turns=(SYSTEM,))
    assert only_system.query is None


def test_nan_sampling_is_rejected():
    with pytest.raises(InvalidRequest, match=r"sampling\.temperature"):
        keys(sampling=Sampling(temperature=float("nan")))


def test_response_format_is_part_of_both_keys():
    from shared.chat import FormatKind, ResponseFormat

    text = request_keys("acme", "small", TURNS, SAMPLING)
    explicit_text = request_keys("acme", "small", TURNS, SAMPLING, ResponseFormat())
    json_object = request_keys(
        "acme", "small", TURNS, SAMPLING, ResponseFormat(FormatKind.JSON_OBJECT)
    )
    assert text == explicit_text
    assert json_object.exact != text.exact and json_object.namespace != text.namespace


def test_equivalent_json_schemas_share_keys_and_different_ones_do_not():
    from shared.chat import FormatKind, ResponseFormat

    def schema(text: str):
        return request_keys(
            "acme", "small", TURNS, SAMPLING, ResponseFormat(FormatKind.JSON_SCHEMA, text)
        )

    compact = schema('{"type":"object","required":["a"]}')
    spaced = schema('{ "required": ["a"],  "type": "object" }')
    other = schema('{"type":"object","required":["b"]}')
    assert compact == spaced
    assert other.exact != compact.exact
    # Not JSON (or NaN, which canonical JSON cannot hold): keyed by its raw text.
    assert schema("{not json").exact != schema("{not json ").exact
    assert schema('{"x": NaN}').exact


@pytest.mark.parametrize("blank", ["", "   ", "\n\t"])
def test_blank_last_user_turn_is_rejected(blank):
    with pytest.raises(InvalidRequest, match=r"messages\[3\]\.content is empty"):
        keys(turns=(SYSTEM, FIRST, REPLY, Turn(Role.USER, blank)))

"""response_format: JSON objects, JSON that fits a json_schema, structured refusals, the
cheap tier's scripted JSON mistakes, and max_tokens cutting JSON."""

from __future__ import annotations

import jsonschema
import orjson
import pytest
from openai.types.chat import ChatCompletion

from tests.unit.simulator.helpers import CHEAP, DEFAULT_MODELS, chat, make_client
from tests.unit.simulator.tools_fixtures import RECIPE_FORMAT, RECIPE_SCHEMA

ASK = "Give me a recipe for a Sunday lunch in JSON."


def content(body: dict) -> str:
    ChatCompletion.model_validate(body)
    return body["choices"][0]["message"]["content"]


async def test_json_object_mode_answers_a_json_object_from_every_model() -> None:
    async with make_client() as client:
        for model in DEFAULT_MODELS:
            body = (
                await chat(client, ASK, model=model, response_format={"type": "json_object"})
            ).json()
            assert isinstance(orjson.loads(content(body)), dict), model


async def test_json_schema_mode_answers_json_that_fits_the_schema() -> None:
    async with make_client() as client:
        for model in DEFAULT_MODELS:
            body = (await chat(client, ASK, model=model, response_format=RECIPE_FORMAT)).json()
            jsonschema.validate(orjson.loads(content(body)), RECIPE_SCHEMA)
            assert body["choices"][0]["finish_reason"] == "stop"


async def test_json_answers_are_deterministic_per_model_prompt_and_seed() -> None:
    async with make_client() as client:
        first = content((await chat(client, ASK, response_format=RECIPE_FORMAT, seed=1)).json())
        again = content((await chat(client, ASK, response_format=RECIPE_FORMAT, seed=1)).json())
        other = content((await chat(client, ASK, response_format=RECIPE_FORMAT, seed=2)).json())
    assert first == again
    assert other != first


async def test_a_refusal_under_json_schema_goes_to_message_refusal() -> None:
    prompt = f"{ASK} [sim:refuse]"
    async with make_client() as client:
        structured = (await chat(client, prompt, model=CHEAP, response_format=RECIPE_FORMAT)).json()
        plain = (await chat(client, prompt, model=CHEAP)).json()
    ChatCompletion.model_validate(structured)
    message = structured["choices"][0]["message"]
    assert message["content"] is None
    assert message["refusal"] == "I'm sorry, but I can't help with that."
    # Plain chat keeps the refusal as text, where the router's refusal gate reads it.
    assert content(plain) == "I'm sorry, but I can't help with that."
    assert plain["choices"][0]["message"]["refusal"] is None


@pytest.mark.parametrize(
    ("marker", "response_format"),
    [
        ("[sim:bad-json]", {"type": "json_object"}),
        ("[sim:bad-json]", RECIPE_FORMAT),
        ("[sim:bad-schema]", {"type": "json_object"}),
        ("[sim:bad-schema]", RECIPE_FORMAT),
    ],
)
async def test_markers_make_the_cheap_tier_break_its_json(marker, response_format) -> None:
    prompt = f"{ASK} {marker}"
    async with make_client() as client:
        cheap = content(
            (await chat(client, prompt, model=CHEAP, response_format=response_format)).json()
        )
        strong = content((await chat(client, prompt, response_format=response_format)).json())
    schema = RECIPE_SCHEMA if response_format is RECIPE_FORMAT else {"type": "object"}
    jsonschema.validate(orjson.loads(strong), schema)
    if marker == "[sim:bad-json]":
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(cheap)
    else:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(orjson.loads(cheap), schema)


async def test_markers_leave_plain_text_answers_alone() -> None:
    async with make_client() as client:
        marked = content((await chat(client, "Explain tides [sim:bad-json]", model=CHEAP)).json())
    assert "Qwen/Qwen3-8B" in marked  # ordinary synthetic prose


async def test_max_tokens_cuts_json_with_finish_length() -> None:
    async with make_client() as client:
        body = (await chat(client, ASK, response_format=RECIPE_FORMAT, max_tokens=5)).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(content(body))

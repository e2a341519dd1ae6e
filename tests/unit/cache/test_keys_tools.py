"""Keys of requests beyond plain text: tools, tool round trips, images, several choices and
logprobs change the exact key, and such requests are matched exactly only."""

from __future__ import annotations

import dataclasses

import pytest

from services.cache.keys import request_keys
from shared.chat import (
    NO_TOOLS,
    ImagePart,
    Role,
    Sampling,
    ToolCall,
    ToolChoiceMode,
    ToolFunction,
    ToolSet,
    Turn,
)

QUESTION = Turn(Role.USER, "What is the weather in Oslo?")
WEATHER = ToolFunction("get_weather", "", '{"type": "object", "properties": {}}')
TOOLS = ToolSet((WEATHER,))


PLAIN = Sampling()


def keys(turns=(QUESTION,), sampling=PLAIN, tools=NO_TOOLS):
    return request_keys("acme", "small", turns, sampling, tools=tools)


def test_a_plain_request_keeps_its_semantic_query() -> None:
    assert keys().query == QUESTION.content


@pytest.mark.parametrize(
    "changed",
    [
        {"tools": TOOLS},
        {"tools": dataclasses.replace(TOOLS, choice=ToolChoiceMode.REQUIRED)},
        {"tools": dataclasses.replace(TOOLS, parallel_tool_calls=False)},
        {"tools": ToolSet((dataclasses.replace(WEATHER, parameters_json='{"type": "array"}'),))},
        {"sampling": Sampling(seed=1)},
        {"sampling": Sampling(n=2)},
        {"sampling": Sampling(logprobs=True)},
        {"sampling": Sampling(presence_penalty=0.5)},
        {"turns": (dataclasses.replace(QUESTION, parts=("x", ImagePart("data:,a"))),)},
        {
            "turns": (
                QUESTION,
                Turn(Role.ASSISTANT, "", tool_calls=(ToolCall("c1", "get_weather", "{}"),)),
                Turn(Role.TOOL, "3 degrees", tool_call_id="c1"),
            )
        },
    ],
)
def test_each_field_changes_the_exact_key(changed) -> None:
    assert keys(**changed).exact != keys().exact


def test_schema_text_that_parses_alike_gives_one_key() -> None:
    spaced = ToolSet(
        (dataclasses.replace(WEATHER, parameters_json='{ "properties":{}, "type":"object" }'),)
    )
    assert keys(tools=spaced).exact == keys(tools=TOOLS).exact


@pytest.mark.parametrize(
    "exact_only",
    [
        {"tools": TOOLS},
        {"sampling": Sampling(n=3)},
        {"sampling": Sampling(logprobs=True, top_logprobs=2)},
        {"turns": (Turn(Role.USER, "", parts=(ImagePart("https://example.com/a.png"),)),)},
    ],
)
def test_tools_choices_logprobs_and_images_are_matched_exactly_only(exact_only) -> None:
    assert keys(**exact_only).query is None

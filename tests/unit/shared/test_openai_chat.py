"""OpenAI choices both ways: request messages and tools the official SDK's types accept, and
choices (tool calls, refusals, several choices, logprobs) assembled from chunks as sent."""

import json

import pydantic
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from shared.chat import (
    Finish,
    ImagePart,
    Role,
    Sampling,
    ToolCall,
    ToolChoiceMode,
    ToolFunction,
    ToolSet,
    Turn,
)
from shared.openai_chat import (
    StreamedChoices,
    choice_from_body,
    message_json,
    sampling_json,
    tools_json,
)

WEATHER = ToolFunction(
    "get_weather",
    "Weather in a city",
    json.dumps({"type": "object", "properties": {"city": {"type": "string"}}}),
    strict=True,
)
MESSAGES = pydantic.TypeAdapter(ChatCompletionMessageParam)
TOOL = pydantic.TypeAdapter(ChatCompletionToolParam)


@pytest.mark.parametrize(
    "turn",
    [
        Turn(Role.USER, "hi", name="ana"),
        Turn(Role.USER, "what is this?", parts=("what is this?", ImagePart("data:,x", "low"))),
        Turn(
            Role.ASSISTANT, "", tool_calls=(ToolCall("call_1", "get_weather", '{"city":"Oslo"}'),)
        ),
        Turn(Role.TOOL, '{"temp": 3}', tool_call_id="call_1"),
        Turn(Role.SYSTEM, "be brief"),
    ],
)
def test_turns_become_messages_the_sdk_accepts(turn: Turn) -> None:
    message = message_json(turn)
    MESSAGES.validate_python(message)
    assert message["role"] == turn.role.value


def test_a_turn_of_tool_calls_only_has_null_content() -> None:
    turn = Turn(Role.ASSISTANT, "", tool_calls=(ToolCall("call_1", "f", "{}"),))
    assert message_json(turn)["content"] is None


def test_tools_and_tool_choice() -> None:
    assert tools_json(ToolSet()) == {}
    body = tools_json(ToolSet((WEATHER,), ToolChoiceMode.FUNCTION, "get_weather", False))
    TOOL.validate_python(body["tools"][0])
    assert body["tools"][0]["function"]["parameters"]["properties"]["city"] == {"type": "string"}
    assert body["tools"][0]["function"]["strict"] is True
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False
    assert tools_json(ToolSet((WEATHER,), ToolChoiceMode.REQUIRED))["tool_choice"] == "required"


def test_sampling_fields() -> None:
    assert sampling_json(Sampling(), gate_logprobs=False) == {}
    body = sampling_json(
        Sampling(seed=7, n=3, logprobs=True, top_logprobs=2, presence_penalty=0.5),
        gate_logprobs=False,
    )
    assert body == {"n": 3, "seed": 7, "logprobs": True, "top_logprobs": 2, "presence_penalty": 0.5}
    assert sampling_json(Sampling(), gate_logprobs=True) == {"logprobs": True}


def test_a_whole_body_choice_with_tool_calls_and_logprobs() -> None:
    raw = {
        "index": 1,
        "finish_reason": "tool_calls",
        "message": {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        "logprobs": {
            "content": [
                {
                    "token": "a",
                    "logprob": -0.5,
                    "bytes": [97],
                    "top_logprobs": [{"token": "b", "logprob": -1.0, "bytes": None}],
                }
            ]
        },
    }
    choice = choice_from_body(raw, 0)
    assert choice.index == 1 and choice.finish is Finish.TOOL_CALLS and choice.content == ""
    assert choice.tool_calls == (ToolCall("call_9", "f", "{}"),)
    assert choice.logprobs[0].token_bytes == b"a" and choice.logprobs[0].top[0].token == "b"


def chunk_choice(index: int, delta: dict, finish: str | None = None) -> dict:
    return {"index": index, "delta": delta, "finish_reason": finish}


def test_streamed_tool_calls_are_assembled_from_fragments() -> None:
    stream = StreamedChoices()
    pieces = [
        chunk_choice(0, {"role": "assistant", "content": None}),
        chunk_choice(
            0,
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
        ),
        chunk_choice(0, {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
        chunk_choice(0, {"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Oslo"}'}}]}),
        chunk_choice(
            0,
            {
                "tool_calls": [
                    {"index": 1, "id": "call_b", "function": {"name": "f", "arguments": "{}"}}
                ]
            },
        ),
        chunk_choice(0, {}, "tool_calls"),
    ]
    deltas = [stream.add(piece) for piece in pieces]
    assert deltas[0] is None and deltas[-1] is None
    assert deltas[1] is not None and deltas[1].tool_calls[0].name == "get_weather"
    assert stream.finished
    (choice,) = stream.choices()
    assert choice.finish is Finish.TOOL_CALLS
    assert choice.tool_calls == (
        ToolCall("call_a", "get_weather", '{"city":"Oslo"}'),
        ToolCall("call_b", "f", "{}"),
    )


def test_several_choices_stream_under_their_index() -> None:
    stream = StreamedChoices()
    for piece in (
        chunk_choice(0, {"content": "Hel"}),
        chunk_choice(1, {"content": "Hi"}),
        chunk_choice(0, {"content": "lo"}, "stop"),
        chunk_choice(1, {"refusal": "no"}),
    ):
        stream.add(piece)
    assert not stream.finished
    stream.add(chunk_choice(1, {}, "stop"))
    first, second = stream.choices()
    assert (first.content, second.content, second.refusal) == ("Hello", "Hi", "no")
    assert stream.finished


def test_a_named_stop_sequence_is_kept_from_bodies_and_streams() -> None:
    raw = {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
    assert choice_from_body(raw, 0).stop_sequence == ""
    assert choice_from_body({**raw, "stop_reason": "END"}, 0).stop_sequence == "END"
    # vLLM names a stop token by its id; that is no sequence of the caller's.
    assert choice_from_body({**raw, "stop_reason": 128001}, 0).stop_sequence == ""
    stream = StreamedChoices()
    stream.add(chunk_choice(0, {"content": "Hi"}))
    stream.add({**chunk_choice(0, {}, "stop"), "stop_reason": "END"})
    assert stream.choices()[0].stop_sequence == "END"

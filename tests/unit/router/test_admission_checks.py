"""Admission's checks of tools, tool-call turns, image parts, choices, logprobs and caller tags
(issue 15's bad-input list): each refusal is a FieldError naming the field, the same words at
both doors; over gRPC it is INVALID_ARGUMENT."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as pb
from sluice.router.v1 import router_service_pb2_grpc as pb_grpc

from services.router.admission import Asked
from services.router.admission_checks import MAX_CHOICES, FieldError
from shared.chat import (
    ImagePart,
    Role,
    Sampling,
    ToolCall,
    ToolChoiceMode,
    ToolFunction,
    ToolSet,
    Turn,
)
from tests.unit.router.door_rig import API_KEY, admission, grpc_door

USER = Turn(Role.USER, "What is the weather in Lisbon?")
WEATHER = ToolFunction(
    "get_weather",
    "Current weather",
    '{"type": "object", "properties": {"city": {"type": "string"}}}',
)
CALL = ToolCall("call_1", "get_weather", '{"city": "Lisbon"}')


def refusal(**asked: Any) -> FieldError:
    asked.setdefault("model_class", "")
    asked.setdefault("turns", (USER,))
    with pytest.raises(FieldError) as caught:
        admission().admit(API_KEY, Asked(**asked))
    assert caught.value.param in str(caught.value), "the message names the field too"
    return caught.value


def admitted(**asked: Any) -> None:
    asked.setdefault("model_class", "")
    asked.setdefault("turns", (USER,))
    admission().admit(API_KEY, Asked(**asked))


@pytest.mark.parametrize(
    ("function", "param", "words"),
    [
        (ToolFunction(""), "tools[0].function.name", "is missing"),
        (ToolFunction("get weather"), "tools[0].function.name", "must match"),
        (ToolFunction("x" * 65), "tools[0].function.name", "must match"),
        (
            ToolFunction("f", parameters_json='"a string"'),
            "tools[0].function.parameters",
            "JSON Schema object",
        ),
        (
            ToolFunction("f", parameters_json="[1, 2]"),
            "tools[0].function.parameters",
            "JSON Schema object",
        ),
        (
            ToolFunction("f", parameters_json='{"type": 12}'),
            "tools[0].function.parameters",
            "not a valid schema",
        ),
        (ToolFunction("f", parameters_json="{nope"), "tools[0].function.parameters", "not JSON"),
        (
            ToolFunction("f", parameters_json='{"type": "string"}'),
            "tools[0].function.parameters",
            "object",
        ),
    ],
)
def test_bad_tools_name_the_tool_field(function: ToolFunction, param: str, words: str) -> None:
    error = refusal(tools=ToolSet((function,)))
    assert error.param == param and words in str(error)


def test_a_tool_offered_twice_is_refused() -> None:
    error = refusal(tools=ToolSet((WEATHER, WEATHER)))
    assert error.param == "tools[1].function.name" and "offered twice" in str(error)


def test_too_many_tools() -> None:
    functions = tuple(ToolFunction(f"f{i}") for i in range(129))
    assert refusal(tools=ToolSet(functions)).param == "tools"


@pytest.mark.parametrize(
    ("tools", "words"),
    [
        (
            ToolSet((WEATHER,), ToolChoiceMode.FUNCTION, "get_time"),
            "'get_time', which is not an offered",
        ),
        (ToolSet((), ToolChoiceMode.REQUIRED), "offers no tools"),
        (ToolSet((), ToolChoiceMode.FUNCTION, "get_weather"), "offers no tools"),
    ],
)
def test_tool_choice_must_fit_the_offered_tools(tools: ToolSet, words: str) -> None:
    error = refusal(tools=tools)
    assert error.param == "tool_choice" and words in str(error)


def test_a_valid_tool_set_and_round_trip_are_admitted() -> None:
    turns = (
        USER,
        Turn(Role.ASSISTANT, "", tool_calls=(CALL,)),
        Turn(Role.TOOL, '{"temp": 21}', tool_call_id="call_1"),
    )
    admitted(tools=ToolSet((WEATHER,), ToolChoiceMode.FUNCTION, "get_weather"), turns=turns)


@pytest.mark.parametrize(
    ("turns", "param"),
    [
        ((USER, Turn(Role.TOOL, "21", tool_call_id="call_9")), "messages[1].tool_call_id"),
        ((USER, Turn(Role.TOOL, "21")), "messages[1].tool_call_id"),
        (
            # The result comes before the call it claims to answer.
            (
                USER,
                Turn(Role.TOOL, "21", tool_call_id="call_1"),
                Turn(Role.ASSISTANT, "", tool_calls=(CALL,)),
                USER,
            ),
            "messages[1].tool_call_id",
        ),
        ((Turn(Role.USER, "q", tool_calls=(CALL,)),), "messages[0].tool_calls"),
        (
            (USER, Turn(Role.ASSISTANT, "", tool_calls=(ToolCall("", "f", "{}"),)), USER),
            "messages[1].tool_calls[0].id",
        ),
        (
            (USER, Turn(Role.ASSISTANT, "", tool_calls=(ToolCall("c", "", "{}"),)), USER),
            "messages[1].tool_calls[0].function.name",
        ),
        ((Turn(Role.USER, "q", tool_call_id="call_1"),), "messages[0].tool_call_id"),
        ((Turn(Role.USER, "q", refusal="no"),), "messages[0].refusal"),
    ],
)
def test_tool_turns_must_fit_together(turns: tuple[Turn, ...], param: str) -> None:
    assert refusal(turns=turns).param == param


def test_a_conversation_may_end_with_a_tool_result_but_not_an_assistant_turn() -> None:
    call = (USER, Turn(Role.ASSISTANT, "", tool_calls=(CALL,)))
    admitted(turns=(*call, Turn(Role.TOOL, "21", tool_call_id="call_1")))
    assert refusal(turns=call).param == "messages[1]"


@pytest.mark.parametrize(
    ("sampling", "param"),
    [
        (Sampling(n=MAX_CHOICES + 1), "n"),
        (Sampling(n=0), "n"),
        (Sampling(n=-3), "n"),
        (Sampling(logprobs=True, top_logprobs=21), "top_logprobs"),
        (Sampling(logprobs=True, top_logprobs=-1), "top_logprobs"),
        (Sampling(top_logprobs=2), "top_logprobs"),
        (Sampling(presence_penalty=2.5), "presence_penalty"),
        (Sampling(frequency_penalty=float("nan")), "frequency_penalty"),
        (Sampling(temperature=3.0), "temperature"),
    ],
)
def test_sampling_out_of_range_names_the_parameter(sampling: Sampling, param: str) -> None:
    assert refusal(sampling=sampling).param == param


def test_the_limits_themselves_are_admitted() -> None:
    admitted(sampling=Sampling(n=MAX_CHOICES, logprobs=True, top_logprobs=20, presence_penalty=-2))


@pytest.mark.parametrize(
    ("end_user", "metadata", "param"),
    [
        ("u" * 257, (), "user"),
        ("", tuple((f"k{i}", "v") for i in range(17)), "metadata"),
        ("", (("k" * 65, "v"),), "metadata"),
        ("", (("", "v"),), "metadata"),
        ("", (("k", "v" * 513),), "metadata"),
    ],
)
def test_caller_tags_are_bounded(end_user: str, metadata: tuple, param: str) -> None:
    assert refusal(end_user=end_user, metadata=metadata).param == param


def image_turn(url: str = "https://example.com/cat.png", detail: str = "") -> Turn:
    return Turn(Role.USER, "What is this?", parts=("What is this?", ImagePart(url, detail)))


def test_an_image_for_a_class_with_a_blind_tier_names_the_model() -> None:
    error = refusal(turns=(image_turn(),), model_class="chat")
    assert error.param == "messages[0].content[1]"
    assert "model 'cheap' (tier 1 of model class 'chat') cannot take images" in str(error)


def test_an_image_for_a_class_whose_tiers_all_take_images_is_admitted() -> None:
    admitted(turns=(image_turn(detail="low"),), model_class="vision")


@pytest.mark.parametrize(
    ("turn", "param"),
    [
        (image_turn("file:///etc/passwd"), "messages[0].content[1].image_url.url"),
        (image_turn(detail="ultra"), "messages[0].content[1].image_url.detail"),
    ],
)
def test_image_parts_must_be_usable(turn: Turn, param: str) -> None:
    assert refusal(turns=(turn,), model_class="vision").param == param


def test_an_image_outside_a_user_turn_is_refused() -> None:
    seen = Turn(Role.SYSTEM, "", parts=(ImagePart("https://example.com/a.png"),))
    assert refusal(turns=(seen, USER), model_class="vision").param == "messages[0].content[0]"


def test_an_image_only_user_turn_is_not_empty() -> None:
    only = Turn(Role.USER, "", parts=(ImagePart("https://example.com/a.png"),))
    admitted(turns=(only,), model_class="vision")


def test_an_unknown_model_class_names_model() -> None:
    assert refusal(model_class="nope").param == "model"


# --- over gRPC: INVALID_ARGUMENT with the same words -----------------------------------------

WEATHER_PB = common_pb2.ToolFunction(name="get_weather", parameters_json=WEATHER.parameters_json)


def user_pb(text: str = "weather in Lisbon?") -> common_pb2.ChatMessage:
    return common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)


GRPC_BAD_INPUT = [
    (
        pb.CompleteRequest(
            messages=[user_pb()], tools=common_pb2.ToolSet(functions=[common_pb2.ToolFunction()])
        ),
        "tools[0].function.name is missing",
    ),
    (
        pb.CompleteRequest(
            messages=[user_pb()],
            tools=common_pb2.ToolSet(
                functions=[common_pb2.ToolFunction(name="f", parameters_json="[1]")]
            ),
        ),
        "tools[0].function.parameters must be a JSON Schema object",
    ),
    (
        pb.CompleteRequest(
            messages=[
                user_pb(),
                common_pb2.ChatMessage(
                    role=common_pb2.ROLE_TOOL, content="21", tool_call_id="call_nowhere"
                ),
            ]
        ),
        "messages[1].tool_call_id 'call_nowhere' answers no tool call",
    ),
    (
        pb.CompleteRequest(messages=[user_pb()], sampling=common_pb2.SamplingParams(n=9)),
        "n is 9; it must be within [1, 8]",
    ),
    (
        pb.CompleteRequest(
            model_class="chat",
            messages=[
                common_pb2.ChatMessage(
                    role=common_pb2.ROLE_USER,
                    parts=[
                        common_pb2.ContentPart(text="what is it?"),
                        common_pb2.ContentPart(
                            image_url=common_pb2.ImageUrl(url="https://example.com/a.png")
                        ),
                    ],
                )
            ],
        ),
        "model 'cheap' (tier 1 of model class 'chat') cannot take images",
    ),
    (
        pb.CompleteRequest(
            messages=[user_pb()],
            tools=common_pb2.ToolSet(
                functions=[WEATHER_PB],
                choice=common_pb2.ToolChoice(
                    mode=common_pb2.TOOL_CHOICE_MODE_FUNCTION, function_name="get_time"
                ),
            ),
        ),
        "tool_choice names 'get_time'",
    ),
]


@pytest.mark.parametrize(("request_pb", "words"), GRPC_BAD_INPUT)
async def test_grpc_bad_input_is_invalid_argument_naming_the_field(
    request_pb: pb.CompleteRequest, words: str
) -> None:
    async with grpc_door() as channel:
        stub = pb_grpc.RouterServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Complete(request_pb, metadata=(("x-api-key", API_KEY),), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in (caught.value.details() or "")

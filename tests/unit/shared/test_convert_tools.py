"""Tools, tool calls, choices, logprobs and stream pieces survive the trip through protobuf."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sluice.common.v1 import common_pb2

from shared.chat import (
    Choice,
    ChoiceDelta,
    Finish,
    ImagePart,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    ToolChoiceMode,
    ToolFunction,
    ToolSet,
    TopLogprob,
)
from shared.convert_tools import (
    choice_delta_from_proto,
    choice_delta_to_proto,
    choices_from_proto,
    choices_to_proto,
    parts_from_proto,
    parts_to_proto,
    tools_from_proto,
    tools_to_proto,
)
from shared.errors import InvalidRequest

text = st.text(max_size=12)
calls = st.builds(ToolCall, text, text, text)
top = st.builds(TopLogprob, text, st.floats(-50, 0), st.one_of(st.none(), st.binary(min_size=1)))
logprobs = st.builds(
    TokenLogprob,
    text,
    st.floats(-50, 0),
    st.one_of(st.none(), st.binary(min_size=1)),
    st.tuples(top) | st.just(()),
)
choices = st.builds(
    Choice,
    st.integers(0, 8),
    text,
    st.sampled_from(list(Finish)),
    st.lists(calls, max_size=3).map(tuple),
    text,
    st.lists(logprobs, max_size=3).map(tuple),
)
tool_sets = st.builds(
    ToolSet,
    st.lists(st.builds(ToolFunction, text, text, text, st.booleans()), max_size=3).map(tuple),
    st.sampled_from(list(ToolChoiceMode)),
    text,
    st.one_of(st.none(), st.booleans()),
)
deltas = st.builds(
    ChoiceDelta,
    st.integers(0, 8),
    text,
    st.lists(st.builds(ToolCallDelta, st.integers(0, 8), text, text, text), max_size=2).map(tuple),
    text,
    st.lists(logprobs, max_size=2).map(tuple),
)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(choices, max_size=3))
def test_choices_round_trip(found: list[Choice]) -> None:
    assert choices_from_proto(choices_to_proto(found)) == tuple(found)


@settings(max_examples=200, deadline=None, database=None)
@given(tool_sets)
def test_tool_sets_round_trip(tools: ToolSet) -> None:
    assert tools_from_proto(tools_to_proto(tools)) == tools


@settings(max_examples=200, deadline=None, database=None)
@given(deltas)
def test_stream_pieces_round_trip(delta: ChoiceDelta) -> None:
    assert choice_delta_from_proto(choice_delta_to_proto(delta)) == delta


def test_parts_round_trip_and_an_empty_part_is_refused() -> None:
    parts = ("look:", ImagePart("https://example.com/cat.png", "high"))
    assert parts_from_proto(parts_to_proto(parts), "messages[0]") == parts
    with pytest.raises(InvalidRequest, match=r"messages\[2\]\.parts\[0\]"):
        parts_from_proto([common_pb2.ContentPart()], "messages[2]")


def test_an_unknown_tool_choice_mode_is_refused() -> None:
    message = common_pb2.ToolSet(choice=common_pb2.ToolChoice(mode=99))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=r"tools\.choice\.mode 99"):
        tools_from_proto(message)

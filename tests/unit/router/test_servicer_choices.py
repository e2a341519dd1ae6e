"""The gRPC mapping of answers: CompleteResponse carries every choice, and a streamed piece
becomes a ContentDelta with its choice, tool-call fragments, refusal and logprobs."""

from __future__ import annotations

from services.router.model import RouteResult, TierDelta
from services.router.servicer import complete_response, content_delta
from shared.chat import (
    Choice,
    ChoiceDelta,
    Finish,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    TopLogprob,
)
from shared.convert_tools import choices_from_proto, logprobs_from_proto
from shared.pricing import TokenUsage


def result(choices: tuple[Choice, ...]) -> RouteResult:
    return RouteResult(
        "r1", "Paris.", Finish.STOP, "cheap", 1, "us-east", TokenUsage(1, 1), (), "top", 9, False,
        "v1", choices,
    )  # fmt: skip


def test_the_response_carries_every_choice_and_a_text_answer_as_one() -> None:
    calls = (ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),)
    choices = (
        Choice(0, "", Finish.TOOL_CALLS, calls),
        Choice(1, "", Finish.STOP, refusal="I can't."),
    )
    assert choices_from_proto(complete_response(result(choices)).choices) == choices
    plain = complete_response(result(())).choices
    assert choices_from_proto(plain) == (Choice(0, "Paris.", Finish.STOP),)


def test_a_piece_becomes_a_content_delta_with_its_choice() -> None:
    logprobs = (TokenLogprob("Hi", -0.2, b"Hi", (TopLogprob("Hello", -1.0),)),)
    piece = ChoiceDelta(
        1,
        "Hi",
        (ToolCallDelta(0, "call_1", "get_weather", '{"ci'),),
        "no",
        logprobs,
    )
    delta = content_delta(TierDelta(2, 3, "", piece=piece))
    assert (delta.attempt, delta.tier, delta.choice_index, delta.text) == (2, 3, 1, "Hi")
    assert [(t.index, t.id, t.name, t.arguments) for t in delta.tool_calls] == [
        (0, "call_1", "get_weather", '{"ci')
    ]
    assert delta.refusal == "no"
    assert logprobs_from_proto(delta.logprobs) == logprobs
    text = content_delta(TierDelta(1, 1, "Par"))
    assert (text.text, text.choice_index, list(text.tool_calls)) == ("Par", 0, [])

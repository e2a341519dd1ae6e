"""Conversions between the common protobuf messages and shared.chat for what goes beyond text:
finish reasons, content parts, tools, tool calls, choices, token logprobs and stream pieces."""

from __future__ import annotations

from collections.abc import Iterable

from sluice.common.v1 import common_pb2

from shared.chat import (
    Choice,
    ChoiceDelta,
    ContentPart,
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
from shared.errors import InvalidRequest

_FINISH_TO_PROTO = {
    Finish.STOP: common_pb2.FINISH_REASON_STOP,
    Finish.LENGTH: common_pb2.FINISH_REASON_LENGTH,
    Finish.CONTENT_FILTER: common_pb2.FINISH_REASON_CONTENT_FILTER,
    Finish.TOOL_CALLS: common_pb2.FINISH_REASON_TOOL_CALLS,
    Finish.UNKNOWN: common_pb2.FINISH_REASON_UNSPECIFIED,
}
_FINISH_FROM_PROTO = {number: finish for finish, number in _FINISH_TO_PROTO.items()}
_CHOICE_FROM_PROTO = {
    common_pb2.TOOL_CHOICE_MODE_UNSPECIFIED: ToolChoiceMode.AUTO,
    common_pb2.TOOL_CHOICE_MODE_AUTO: ToolChoiceMode.AUTO,
    common_pb2.TOOL_CHOICE_MODE_NONE: ToolChoiceMode.NONE,
    common_pb2.TOOL_CHOICE_MODE_REQUIRED: ToolChoiceMode.REQUIRED,
    common_pb2.TOOL_CHOICE_MODE_FUNCTION: ToolChoiceMode.FUNCTION,
}
_CHOICE_TO_PROTO = {
    ToolChoiceMode.AUTO: common_pb2.TOOL_CHOICE_MODE_AUTO,
    ToolChoiceMode.NONE: common_pb2.TOOL_CHOICE_MODE_NONE,
    ToolChoiceMode.REQUIRED: common_pb2.TOOL_CHOICE_MODE_REQUIRED,
    ToolChoiceMode.FUNCTION: common_pb2.TOOL_CHOICE_MODE_FUNCTION,
}


def finish_to_proto(finish: Finish) -> common_pb2.FinishReason.ValueType:
    return _FINISH_TO_PROTO[finish]


def finish_from_proto(value: common_pb2.FinishReason.ValueType) -> Finish:
    return _FINISH_FROM_PROTO.get(value, Finish.UNKNOWN)


def parts_from_proto(
    parts: Iterable[common_pb2.ContentPart], where: str
) -> tuple[ContentPart, ...]:
    found: list[ContentPart] = []
    for index, part in enumerate(parts):
        kind = part.WhichOneof("part")
        if kind == "text":
            found.append(part.text)
        elif kind == "image_url":
            found.append(ImagePart(part.image_url.url, part.image_url.detail))
        else:
            raise InvalidRequest(f"{where}.parts[{index}] has neither text nor image_url")
    return tuple(found)


def parts_to_proto(parts: Iterable[ContentPart]) -> list[common_pb2.ContentPart]:
    return [
        common_pb2.ContentPart(text=part)
        if isinstance(part, str)
        else common_pb2.ContentPart(image_url=common_pb2.ImageUrl(url=part.url, detail=part.detail))
        for part in parts
    ]


def tool_calls_from_proto(calls: Iterable[common_pb2.ToolCall]) -> tuple[ToolCall, ...]:
    return tuple(ToolCall(c.id, c.name, c.arguments) for c in calls)


def tool_calls_to_proto(calls: Iterable[ToolCall]) -> list[common_pb2.ToolCall]:
    return [common_pb2.ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in calls]


def tools_from_proto(tools: common_pb2.ToolSet) -> ToolSet:
    choice = _CHOICE_FROM_PROTO.get(tools.choice.mode)
    if choice is None:
        raise InvalidRequest(f"tools.choice.mode {tools.choice.mode} is unknown")
    return ToolSet(
        functions=tuple(
            ToolFunction(f.name, f.description, f.parameters_json, f.strict)
            for f in tools.functions
        ),
        choice=choice,
        function_name=tools.choice.function_name,
        parallel_tool_calls=(
            tools.parallel_tool_calls if tools.HasField("parallel_tool_calls") else None
        ),
    )


def tools_to_proto(tools: ToolSet) -> common_pb2.ToolSet:
    message = common_pb2.ToolSet(
        functions=[
            common_pb2.ToolFunction(
                name=f.name,
                description=f.description,
                parameters_json=f.parameters_json,
                strict=f.strict,
            )
            for f in tools.functions
        ],
        choice=common_pb2.ToolChoice(
            mode=_CHOICE_TO_PROTO[tools.choice], function_name=tools.function_name
        ),
    )
    if tools.parallel_tool_calls is not None:
        message.parallel_tool_calls = tools.parallel_tool_calls
    return message


def logprobs_from_proto(entries: Iterable[common_pb2.TokenLogprob]) -> tuple[TokenLogprob, ...]:
    return tuple(
        TokenLogprob(
            e.token,
            e.logprob,
            e.token_bytes or None,
            tuple(TopLogprob(t.token, t.logprob, t.token_bytes or None) for t in e.top_logprobs),
        )
        for e in entries
    )


def logprobs_to_proto(entries: Iterable[TokenLogprob]) -> list[common_pb2.TokenLogprob]:
    return [
        common_pb2.TokenLogprob(
            token=e.token,
            logprob=e.logprob,
            token_bytes=e.token_bytes or b"",
            top_logprobs=[
                common_pb2.TopLogprob(
                    token=t.token, logprob=t.logprob, token_bytes=t.token_bytes or b""
                )
                for t in e.top
            ],
        )
        for e in entries
    ]


def choices_from_proto(choices: Iterable[common_pb2.Choice]) -> tuple[Choice, ...]:
    return tuple(
        Choice(
            index=c.index,
            content=c.content,
            finish=finish_from_proto(c.finish_reason),
            tool_calls=tool_calls_from_proto(c.tool_calls),
            refusal=c.refusal,
            logprobs=logprobs_from_proto(c.logprobs),
            stop_sequence=c.stop_sequence,
        )
        for c in choices
    )


def choices_to_proto(choices: Iterable[Choice]) -> list[common_pb2.Choice]:
    return [
        common_pb2.Choice(
            index=c.index,
            content=c.content,
            finish_reason=finish_to_proto(c.finish),
            tool_calls=tool_calls_to_proto(c.tool_calls),
            refusal=c.refusal,
            logprobs=logprobs_to_proto(c.logprobs),
            stop_sequence=c.stop_sequence,
        )
        for c in choices
    ]


def choice_delta_from_proto(delta: common_pb2.ChoiceDelta) -> ChoiceDelta:
    return ChoiceDelta(
        index=delta.index,
        content=delta.content,
        tool_calls=tuple(
            ToolCallDelta(t.index, t.id, t.name, t.arguments) for t in delta.tool_calls
        ),
        refusal=delta.refusal,
        logprobs=logprobs_from_proto(delta.logprobs),
    )


def choice_delta_to_proto(delta: ChoiceDelta) -> common_pb2.ChoiceDelta:
    return common_pb2.ChoiceDelta(
        index=delta.index,
        content=delta.content,
        tool_calls=[
            common_pb2.ToolCallDelta(index=t.index, id=t.id, name=t.name, arguments=t.arguments)
            for t in delta.tool_calls
        ],
        refusal=delta.refusal,
        logprobs=logprobs_to_proto(delta.logprobs),
    )

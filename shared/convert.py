"""Conversions between the common protobuf messages and the domain types in shared.chat."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from google.protobuf.duration_pb2 import Duration
from sluice.common.v1 import common_pb2

from shared.chat import Finish, FormatKind, ResponseFormat, Role, Sampling, Turn
from shared.errors import InvalidRequest
from shared.pricing import TokenUsage

_ROLE_FROM_PROTO = {
    common_pb2.ROLE_SYSTEM: Role.SYSTEM,
    common_pb2.ROLE_USER: Role.USER,
    common_pb2.ROLE_ASSISTANT: Role.ASSISTANT,
    common_pb2.ROLE_TOOL: Role.TOOL,
}
_ROLE_TO_PROTO = {role: number for number, role in _ROLE_FROM_PROTO.items()}
_FINISH_TO_PROTO = {
    Finish.STOP: common_pb2.FINISH_REASON_STOP,
    Finish.LENGTH: common_pb2.FINISH_REASON_LENGTH,
    Finish.CONTENT_FILTER: common_pb2.FINISH_REASON_CONTENT_FILTER,
    Finish.TOOL_CALLS: common_pb2.FINISH_REASON_TOOL_CALLS,
    Finish.UNKNOWN: common_pb2.FINISH_REASON_UNSPECIFIED,
}
_FINISH_FROM_PROTO = {number: finish for finish, number in _FINISH_TO_PROTO.items()}


def turns_from_proto(messages: Iterable[common_pb2.ChatMessage]) -> tuple[Turn, ...]:
    """Converts messages, rejecting unknown roles with a message naming the index."""
    turns = []
    for index, message in enumerate(messages):
        role = _ROLE_FROM_PROTO.get(message.role)
        if role is None:
            raise InvalidRequest(f"messages[{index}].role is unset or unknown ({message.role})")
        turns.append(Turn(role=role, content=message.content, name=message.name))
    return tuple(turns)


def turns_to_proto(turns: Iterable[Turn]) -> list[common_pb2.ChatMessage]:
    return [
        common_pb2.ChatMessage(role=_ROLE_TO_PROTO[t.role], content=t.content, name=t.name)
        for t in turns
    ]


def sampling_from_proto(params: common_pb2.SamplingParams) -> Sampling:
    return Sampling(
        temperature=params.temperature if params.HasField("temperature") else None,
        top_p=params.top_p if params.HasField("top_p") else None,
        max_tokens=params.max_tokens,
        stop=tuple(params.stop),
    )


def sampling_to_proto(sampling: Sampling) -> common_pb2.SamplingParams:
    params = common_pb2.SamplingParams(max_tokens=sampling.max_tokens, stop=list(sampling.stop))
    if sampling.temperature is not None:
        params.temperature = sampling.temperature
    if sampling.top_p is not None:
        params.top_p = sampling.top_p
    return params


def usage_from_proto(usage: common_pb2.Usage) -> TokenUsage:
    return TokenUsage(usage.input_tokens, usage.output_tokens, usage.cached_input_tokens)


def usage_to_proto(usage: TokenUsage) -> common_pb2.Usage:
    return common_pb2.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
    )


def finish_to_proto(finish: Finish) -> common_pb2.FinishReason.ValueType:
    return _FINISH_TO_PROTO[finish]


def finish_from_proto(value: common_pb2.FinishReason.ValueType) -> Finish:
    return _FINISH_FROM_PROTO.get(value, Finish.UNKNOWN)


def duration_from_seconds(seconds: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(int(seconds * 1e9))
    return duration


def contents(turns: Sequence[Turn]) -> list[str]:
    return [turn.content for turn in turns]


_FORMAT_FROM_PROTO = {
    common_pb2.RESPONSE_FORMAT_TYPE_UNSPECIFIED: FormatKind.TEXT,
    common_pb2.RESPONSE_FORMAT_TYPE_TEXT: FormatKind.TEXT,
    common_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT: FormatKind.JSON_OBJECT,
    common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA: FormatKind.JSON_SCHEMA,
}
_FORMAT_TO_PROTO = {
    FormatKind.TEXT: common_pb2.RESPONSE_FORMAT_TYPE_UNSPECIFIED,
    FormatKind.JSON_OBJECT: common_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT,
    FormatKind.JSON_SCHEMA: common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
}


def response_format_from_proto(value: common_pb2.ResponseFormat) -> ResponseFormat:
    kind = _FORMAT_FROM_PROTO.get(value.type)
    if kind is None:
        raise InvalidRequest(f"response_format.type {value.type} is unknown")
    return ResponseFormat(kind, value.json_schema)


def response_format_to_proto(value: ResponseFormat) -> common_pb2.ResponseFormat:
    return common_pb2.ResponseFormat(
        type=_FORMAT_TO_PROTO[value.kind], json_schema=value.json_schema
    )

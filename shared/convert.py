"""Conversions between the common protobuf messages and the domain types in shared.chat."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from google.protobuf.duration_pb2 import Duration
from sluice.common.v1 import common_pb2

from shared.chat import FormatKind, ResponseFormat, Role, Sampling, Turn
from shared.convert_tools import (
    finish_from_proto,
    finish_to_proto,
    parts_from_proto,
    parts_to_proto,
    tool_calls_from_proto,
    tool_calls_to_proto,
)
from shared.errors import InvalidRequest
from shared.pricing import TokenUsage

# Re-exported: every service converts finish reasons through shared.convert.
__all__ = ["finish_from_proto", "finish_to_proto"]

_ROLE_FROM_PROTO = {
    common_pb2.ROLE_SYSTEM: Role.SYSTEM,
    common_pb2.ROLE_USER: Role.USER,
    common_pb2.ROLE_ASSISTANT: Role.ASSISTANT,
    common_pb2.ROLE_TOOL: Role.TOOL,
}
_ROLE_TO_PROTO = {role: number for number, role in _ROLE_FROM_PROTO.items()}


def turns_from_proto(messages: Iterable[common_pb2.ChatMessage]) -> tuple[Turn, ...]:
    """Converts messages, rejecting unknown roles with a message naming the index."""
    turns = []
    for index, message in enumerate(messages):
        role = _ROLE_FROM_PROTO.get(message.role)
        if role is None:
            raise InvalidRequest(f"messages[{index}].role is unset or unknown ({message.role})")
        turns.append(
            Turn(
                role=role,
                content=message.content,
                name=message.name,
                parts=parts_from_proto(message.parts, f"messages[{index}]"),
                tool_calls=tool_calls_from_proto(message.tool_calls),
                tool_call_id=message.tool_call_id,
                refusal=message.refusal,
            )
        )
    return tuple(turns)


def turns_to_proto(turns: Iterable[Turn]) -> list[common_pb2.ChatMessage]:
    return [
        common_pb2.ChatMessage(
            role=_ROLE_TO_PROTO[t.role],
            content=t.content,
            name=t.name,
            parts=parts_to_proto(t.parts),
            tool_calls=tool_calls_to_proto(t.tool_calls),
            tool_call_id=t.tool_call_id,
            refusal=t.refusal,
        )
        for t in turns
    ]


def sampling_from_proto(params: common_pb2.SamplingParams) -> Sampling:
    return Sampling(
        temperature=params.temperature if params.HasField("temperature") else None,
        top_p=params.top_p if params.HasField("top_p") else None,
        max_tokens=params.max_tokens,
        stop=tuple(params.stop),
        seed=params.seed if params.HasField("seed") else None,
        n=params.n or 1,
        logprobs=params.logprobs,
        top_logprobs=params.top_logprobs,
        presence_penalty=(params.presence_penalty if params.HasField("presence_penalty") else None),
        frequency_penalty=(
            params.frequency_penalty if params.HasField("frequency_penalty") else None
        ),
        top_k=params.top_k if params.HasField("top_k") else None,
    )


def sampling_to_proto(sampling: Sampling) -> common_pb2.SamplingParams:
    params = common_pb2.SamplingParams(
        max_tokens=sampling.max_tokens,
        stop=list(sampling.stop),
        n=sampling.n if sampling.n > 1 else 0,
        logprobs=sampling.logprobs,
        top_logprobs=sampling.top_logprobs,
    )
    optional = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": sampling.seed,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
        "top_k": sampling.top_k,
    }
    for name, value in optional.items():
        if value is not None:
            setattr(params, name, value)
    return params


def usage_from_proto(usage: common_pb2.Usage) -> TokenUsage:
    return TokenUsage(usage.input_tokens, usage.output_tokens, usage.cached_input_tokens)


def usage_to_proto(usage: TokenUsage) -> common_pb2.Usage:
    return common_pb2.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
    )


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
    return ResponseFormat(kind, value.json_schema, value.schema_name, value.strict)


def response_format_to_proto(value: ResponseFormat) -> common_pb2.ResponseFormat:
    return common_pb2.ResponseFormat(
        type=_FORMAT_TO_PROTO[value.kind],
        json_schema=value.json_schema,
        schema_name=value.schema_name,
        strict=value.strict,
    )

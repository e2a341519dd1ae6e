"""The whole chat surface over gRPC against the real mesh: tool calls whose arguments validate,
a tool round trip, a cheap tier's bad call caught by the tool-call gate, json_schema strict,
n=2, logprobs, streamed tool calls that reassemble into the summary's, and INVALID_ARGUMENT
naming the field."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import grpc
import jsonschema
import pytest
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as router_pb

from shared.mesh import Mesh
from shared.otlp_receiver import OtlpReceiver, SpanRecord
from tests.support import DEV_KEY, router_stub, stage_lines

pytestmark = pytest.mark.integration

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
WEATHER = common_pb2.ToolFunction(
    name="get_weather",
    description="Current weather in a city",
    parameters_json=json.dumps(WEATHER_SCHEMA),
)
TOOLS = common_pb2.ToolSet(functions=[WEATHER])
TOOL_CALLS = common_pb2.FINISH_REASON_TOOL_CALLS


def user(text: str) -> common_pb2.ChatMessage:
    return common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)


def weather_request(text: str, **fields: object) -> router_pb.CompleteRequest:
    """A question the weather tool matches, unique so no earlier answer is cached."""
    question = f"What is the weather in Lisbon today? {text} (case {uuid.uuid4().hex[:8]})"
    return router_pb.CompleteRequest(messages=[user(question)], tools=TOOLS, **fields)  # type: ignore[arg-type]


def valid_call(call: common_pb2.ToolCall) -> dict[str, object]:
    arguments = json.loads(call.arguments)
    jsonschema.validate(arguments, WEATHER_SCHEMA)
    assert call.name == "get_weather" and call.id
    return dict(arguments)


async def test_a_tool_call_whose_arguments_validate(channel: grpc.aio.Channel, mesh: Mesh) -> None:
    response = await router_stub(channel).Complete(
        weather_request(""), metadata=DEV_KEY, timeout=30
    )
    assert response.finish_reason == TOOL_CALLS
    [choice] = response.choices
    assert choice.finish_reason == TOOL_CALLS and not choice.content
    assert valid_call(choice.tool_calls[0])["city"] == "Lisbon"
    # The cheap tier malforms a scripted share of calls (the simulator's malformed_rate, drawn
    # per prompt); when this prompt's draw is one, the gate turns it down and tier 2 answers.
    lines = stage_lines(response)
    if response.tier == 1:
        assert lines["tier 1"].outcome == common_pb2.STAGE_OUTCOME_USED
    else:
        assert lines["tier 1"].outcome == common_pb2.STAGE_OUTCOME_REJECTED
        assert "gate tool_call" in lines["tier 1"].detail


async def test_a_tool_round_trip_ends_in_a_text_answer(
    channel: grpc.aio.Channel, mesh: Mesh
) -> None:
    stub = router_stub(channel)
    asked = weather_request("")
    first = await stub.Complete(asked, metadata=DEV_KEY, timeout=30)
    call = first.choices[0].tool_calls[0]
    request = router_pb.CompleteRequest(
        messages=[
            *asked.messages,
            # The call as the first answer made it, then the caller's tool's result.
            common_pb2.ChatMessage(role=common_pb2.ROLE_ASSISTANT, tool_calls=[call]),
            common_pb2.ChatMessage(
                role=common_pb2.ROLE_TOOL,
                tool_call_id=call.id,
                content='{"temperature": 21, "sky": "clear"}',
            ),
        ],
        tools=TOOLS,
    )
    answer = await stub.Complete(request, metadata=DEV_KEY, timeout=30)
    assert answer.finish_reason == common_pb2.FINISH_REASON_STOP
    assert answer.content and not answer.choices[0].tool_calls
    assert "21" in answer.content


async def wait_for_span(receiver: OtlpReceiver, trace_id: str, name: str) -> SpanRecord:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [s for s in receiver.spans(trace_id) if s.name == name]
        if found:
            return found[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no span {name!r} in trace {trace_id}")


async def test_a_cheap_tiers_bad_tool_call_escalates_and_the_reason_is_counted(
    channel: grpc.aio.Channel, mesh: Mesh, mesh_and_traces: tuple[Mesh, OtlpReceiver]
) -> None:
    _, receiver = mesh_and_traces
    response = await router_stub(channel).Complete(
        weather_request("[sim:bad-tool-args]"), metadata=DEV_KEY, timeout=30
    )
    lines = stage_lines(response)
    rejected = lines["tier 1"]
    assert rejected.outcome == common_pb2.STAGE_OUTCOME_REJECTED
    assert rejected.detail.startswith("gate tool_call: schema: "), rejected.detail
    assert rejected.cost_nano_usd > 0, "the rejected attempt still counts"
    assert response.tier == 2 and response.finish_reason == TOOL_CALLS
    valid_call(response.choices[0].tool_calls[0])
    span = await wait_for_span(receiver, response.trace_id, "tier 1 Qwen/Qwen3-8B")
    assert span.attributes["sluice.gate.tool_call.reason"] == "schema"
    assert span.attributes["sluice.gate.failed"] == "tool_call"


SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "population": {"type": "integer", "minimum": 0},
    },
    "required": ["city", "population"],
    "additionalProperties": False,
}


async def test_json_schema_strict_answers_fit_the_schema(
    channel: grpc.aio.Channel, mesh: Mesh
) -> None:
    request = router_pb.CompleteRequest(
        messages=[user(f"Name a large city and its population ({uuid.uuid4().hex[:8]}).")],
        response_format=common_pb2.ResponseFormat(
            type=common_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
            json_schema=json.dumps(SCHEMA),
            schema_name="city",
            strict=True,
        ),
    )
    response = await router_stub(channel).Complete(request, metadata=DEV_KEY, timeout=30)
    jsonschema.validate(json.loads(response.content), SCHEMA)
    assert response.finish_reason == common_pb2.FINISH_REASON_STOP


async def test_two_choices_and_logprobs(channel: grpc.aio.Channel, mesh: Mesh) -> None:
    request = router_pb.CompleteRequest(
        messages=[user(f"Say something about rivers ({uuid.uuid4().hex[:8]}).")],
        sampling=common_pb2.SamplingParams(n=2, temperature=0.8, logprobs=True, top_logprobs=2),
        cache_mode=router_pb.CACHE_MODE_BYPASS,
    )
    response = await router_stub(channel).Complete(request, metadata=DEV_KEY, timeout=30)
    assert [c.index for c in response.choices] == [0, 1]
    assert response.choices[0].content == response.content
    for choice in response.choices:
        assert choice.content and choice.logprobs
        assert all(entry.logprob <= 0 for entry in choice.logprobs)
        assert len(choice.logprobs[0].top_logprobs) == 2


async def test_a_streamed_tool_call_reassembles_into_the_summarys(
    channel: grpc.aio.Channel, mesh: Mesh
) -> None:
    asked = weather_request("")
    request = router_pb.CompleteStreamRequest(messages=asked.messages, tools=TOOLS)
    calls: dict[int, dict[str, str]] = {}
    summary = None
    attempt = 0
    async for event in router_stub(channel).CompleteStream(request, metadata=DEV_KEY, timeout=30):
        if event.HasField("summary"):
            summary = event.summary
            continue
        if event.delta.attempt != attempt:
            # A new attempt: the earlier one was rejected, and a client drops what it sent.
            attempt, calls = event.delta.attempt, {}
        for fragment in event.delta.tool_calls:
            call = calls.setdefault(fragment.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += fragment.id
            call["name"] += fragment.name
            call["arguments"] += fragment.arguments
    assert summary is not None and summary.finish_reason == TOOL_CALLS
    final = summary.choices[0].tool_calls
    assert [(c["id"], c["name"], c["arguments"]) for c in calls.values()] == [
        (c.id, c.name, c.arguments) for c in final
    ]
    valid_call(final[0])


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"tools": common_pb2.ToolSet(functions=[common_pb2.ToolFunction()])}, "name"),
        ({"sampling": common_pb2.SamplingParams(n=9)}, "n"),
        (
            {
                "tools": common_pb2.ToolSet(
                    functions=[common_pb2.ToolFunction(name="f", parameters_json="[1]")]
                )
            },
            "parameters",
        ),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    channel: grpc.aio.Channel, mesh: Mesh, request_fields: dict[str, object], field: str
) -> None:
    request = router_pb.CompleteRequest(messages=[user("Hello?")], **request_fields)  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await router_stub(channel).Complete(request, metadata=DEV_KEY, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (raised.value.details() or ""), raised.value.details()

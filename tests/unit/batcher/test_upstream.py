"""The dispatcher adapter: which calls may be packed, what a pack key holds, and the packed
call's span, which starts its own trace and links to every member's span."""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sluice.common.v1 import common_pb2
from sluice.dispatcher.v1 import dispatcher_service_pb2 as dispatcher_pb

from services.batcher.packing import PackItem, pack_turns
from services.batcher.upstream import DispatcherUpstream, pack_key, packable_shape

SYSTEM = "word " * 300


def call(system: str = SYSTEM, **changes: Any) -> common_pb2.ModelCall:
    made = common_pb2.ModelCall(
        model="gpt-4o",
        messages=[
            common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=system),
            common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="question"),
        ],
        sampling=common_pb2.SamplingParams(max_tokens=10, temperature=0.2),
    )
    for name, value in changes.items():
        getattr(made, name).CopyFrom(value)
    return made


def words(text: str) -> int:
    return len(text.split())


def test_only_a_system_and_a_user_turn_of_free_text_without_stops_is_packable():
    assert packable_shape(call(), words, 200)
    assert not packable_shape(call(system="short"), words, 200)
    assert not packable_shape(call(sampling=common_pb2.SamplingParams(stop=["\n"])), words, 200)
    json_format = common_pb2.ResponseFormat(type=common_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT)
    assert not packable_shape(call(response_format=json_format), words, 200)
    three_turns = call()
    three_turns.messages.append(common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content="x"))
    assert not packable_shape(three_turns, words, 200)


def test_calls_with_tools_choices_logprobs_or_images_are_never_packed():
    tools = common_pb2.ToolSet(functions=[common_pb2.ToolFunction(name="f")])
    assert not packable_shape(call(tools=tools), words, 200)
    assert not packable_shape(call(sampling=common_pb2.SamplingParams(n=2)), words, 200)
    assert not packable_shape(call(sampling=common_pb2.SamplingParams(logprobs=True)), words, 200)
    gated = call()
    gated.logprobs = True
    assert not packable_shape(gated, words, 200)
    image = call()
    image.messages[1].parts.add(image_url=common_pb2.ImageUrl(url="data:,x"))
    assert not packable_shape(image, words, 200)


def test_the_pack_key_ignores_the_question_and_max_tokens_only():
    context = common_pb2.RequestContext(tenant_id="t", request_id="a")
    other = call()
    other.messages[1].content = "another question"
    other.sampling.max_tokens = 99
    assert pack_key(context, call()) == pack_key(
        common_pb2.RequestContext(tenant_id="t", request_id="b"), other
    )
    hotter = call(sampling=common_pb2.SamplingParams(max_tokens=10, temperature=0.9))
    assert pack_key(context, call()) != pack_key(context, hotter)
    assert pack_key(context, call()) != pack_key(common_pb2.RequestContext(tenant_id="u"), call())


class Dispatcher:
    def __init__(self) -> None:
        self.requests: list[dispatcher_pb.DispatchRequest] = []

    async def Dispatch(
        self,
        request: dispatcher_pb.DispatchRequest,
        timeout: float | None = None,  # noqa: ASYNC109 - the stub's signature
    ) -> dispatcher_pb.DispatchResponse:
        self.requests.append(request)
        return dispatcher_pb.DispatchResponse(
            completion=common_pb2.Completion(
                content="[]", finish_reason=common_pb2.FINISH_REASON_STOP
            )
        )


async def test_the_packed_call_has_its_own_trace_linked_to_every_member():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    dispatcher = Dispatcher()
    upstream = DispatcherUpstream(dispatcher, tracer)  # type: ignore[arg-type]
    members = []
    for name in ("member-1", "member-2"):
        with tracer.start_as_current_span(name):
            members.append(otel_context.get_current())
    key = pack_key(common_pb2.RequestContext(tenant_id="t"), call())
    turns = pack_turns(SYSTEM, [PackItem("1", "a"), PackItem("2", "b")])
    await upstream.send_packed(key, turns, 50, 5.0, members)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    pack = spans["batcher.pack"]
    linked = {link.context.span_id for link in pack.links}
    assert linked == {spans["member-1"].context.span_id, spans["member-2"].context.span_id}
    assert pack.context.trace_id not in {spans["member-1"].context.trace_id}
    assert pack.parent is None and dict(pack.attributes or {})["sluice.batch.packed_size"] == 2
    [sent] = dispatcher.requests
    assert sent.call.sampling.max_tokens == 50 and sent.call.sampling.temperature == 0.2
    assert [m.content for m in sent.call.messages] == [t.content for t in turns]
    assert sent.context.tenant_id == "t" and sent.context.request_id.startswith("pack-")
    assert trace.get_current_span() is trace.INVALID_SPAN

"""The tier and provider-call spans carry the OpenInference names Arize Phoenix reads (`sluice up
--trace-ui`) beside the GenAI ones, and neither names carry a prompt or an answer."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest

from shared.mesh import Mesh
from shared.otlp_receiver import OtlpReceiver, SpanRecord
from tests.support import DEV_KEY, ask, router_stub
from tests.telemetry.test_trace_edges import CLIENT, DISPATCH, ROUTER, SERVER, one

pytestmark = pytest.mark.integration

INTERNAL = 1  # OTLP span kind of the router's tier spans
TIER, CHAT = "tier 1 Qwen/Qwen3-8B", "chat Qwen/Qwen3-8B"

# OpenInference's attributes for a call's content; DESIGN §6 keeps content off spans.
CONTENT_ATTRIBUTES = ("input.value", "output.value", "llm.input_messages", "llm.output_messages")


def wait_for_spans(receiver: OtlpReceiver, trace_id: str, *names: str) -> list[SpanRecord]:
    """The trace's spans once every named span has arrived (services export in batches)."""
    deadline = time.monotonic() + 15
    spans = receiver.spans(trace_id)
    while not set(names) <= {s.name for s in spans} and time.monotonic() < deadline:
        time.sleep(0.1)
        spans = receiver.spans(trace_id)
    return spans


def kind(span: SpanRecord) -> str:
    return str(span.attributes.get("openinference.span.kind", ""))


def assert_no_content(spans: list[SpanRecord], *texts: str) -> None:
    assert all(texts), "an empty text would be found everywhere"
    for span in spans:
        names = [k for k in span.attributes if k.startswith(CONTENT_ATTRIBUTES)]
        assert not names, f"{span.name} carries {names}"
        values = repr(span.attributes)
        assert not [t for t in texts if t in values], f"{span.name} carries content: {values}"


async def test_tier_and_provider_spans_read_as_a_chain_step_and_an_llm_call(
    channel: grpc.aio.Channel, mesh: Mesh, mesh_and_traces: tuple[Mesh, OtlpReceiver]
) -> None:
    _, receiver = mesh_and_traces
    prompt = f"Explain OpenInference spans ({uuid.uuid4().hex[:8]})"
    response = await router_stub(channel).Complete(ask(prompt), metadata=DEV_KEY, timeout=30)
    spans = wait_for_spans(receiver, response.trace_id, TIER, CHAT)
    usage, cost = response.usage, response.cost.total_cost_nano_usd / 1e9
    counts = {
        "llm.token_count.prompt": usage.input_tokens,
        "llm.token_count.completion": usage.output_tokens,
        "llm.token_count.total": usage.input_tokens + usage.output_tokens,
    }

    tier = one(spans, TIER, "sluice-router", INTERNAL).attributes
    assert tier["openinference.span.kind"] == "CHAIN"
    assert tier["llm.model_name"] == tier["gen_ai.request.model"] == "Qwen/Qwen3-8B"
    assert {k: tier[k] for k in counts} == counts
    assert tier["llm.cost.total"] == pytest.approx(cost) == tier["sluice.cost.usd"]

    chat = one(spans, CHAT, "sluice-dispatcher", CLIENT).attributes
    assert chat["openinference.span.kind"] == "LLM"
    assert chat["llm.model_name"] == chat["gen_ai.response.model"] == "Qwen/Qwen3-8B"
    # The simulator's endpoint speaks OpenAI's chat completions and is its own host.
    assert (chat["llm.system"], chat["llm.provider"]) == ("openai", "simulator")
    assert {k: chat[k] for k in counts} == counts
    assert chat["llm.cost.total"] == pytest.approx(cost) == chat["sluice.cost.usd"]
    # Phoenix takes a span with GenAI names but no kind for an LLM call and adds up the tokens
    # of LLM calls, so each such span says its kind, and only the provider call is one.
    unnamed = [s.name for s in spans if "gen_ai.request.model" in s.attributes and not kind(s)]
    assert not unnamed, f"GenAI spans without an OpenInference kind: {unnamed}"
    assert [s.name for s in spans if kind(s) == "LLM"] == [CHAT]
    assert kind(one(spans, ROUTER, "sluice-router", SERVER)) == "CHAIN"
    assert kind(one(spans, DISPATCH, "sluice-dispatcher", SERVER)) == "CHAIN"

    assert_no_content(spans, prompt, response.content)


async def test_an_anthropic_endpoint_is_named_as_the_messages_api(
    channel: grpc.aio.Channel, mesh: Mesh, mesh_and_traces: tuple[Mesh, OtlpReceiver]
) -> None:
    _, receiver = mesh_and_traces
    prompt = f"Explain Raft ({uuid.uuid4().hex[:8]})"
    response = await router_stub(channel).Complete(
        ask(prompt, model_class="claude"), metadata=DEV_KEY, timeout=30
    )
    spans = wait_for_spans(receiver, response.trace_id, "chat claude-haiku-4-5")
    chat = one(spans, "chat claude-haiku-4-5", "sluice-dispatcher", CLIENT).attributes
    assert chat["openinference.span.kind"] == "LLM"
    assert (chat["llm.system"], chat["llm.provider"]) == ("anthropic", "anthropic")
    assert chat["llm.token_count.prompt"] == response.usage.input_tokens
    assert_no_content(spans, prompt, response.content)

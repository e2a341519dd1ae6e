"""The official `anthropic` SDK against the front door of a real mesh (issue 19, Must shows 4
and 5): the README's snippets as written, a plain message, a stream reassembled by the SDK's
stream helper, a tool-use round trip, an image block, a 400 for a missing max_tokens and a 401
for a wrong key; and one request sent through the Messages door, the OpenAI door and gRPC,
whose cost lines match."""

from __future__ import annotations

import contextlib
import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import grpc
import openai
import pytest
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as pb

from shared.mesh import Mesh
from tests.support import DEV_KEY, ask, router_stub

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"
README_URL = "http://127.0.0.1:8080"
WEATHER: Any = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
# A 1x1 PNG.
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
    "AAAABJRU5ErkJggg=="
)


def fresh(text: str) -> str:
    """The text with a tag no earlier request had, so the cache cannot answer it."""
    return f"{text} (ref {uuid.uuid4().hex[:8]})"


@pytest.fixture
def client(mesh: Mesh) -> Iterator[anthropic.Anthropic]:
    url = f"http://{mesh.address('router_http')}"
    with anthropic.Anthropic(base_url=url, api_key="dev", max_retries=0, timeout=60) as opened:
        yield opened


def test_the_readme_snippets_run_as_written(mesh: Mesh) -> None:
    section = README.read_text().split("## Use from the Anthropic SDK", 1)[1].split("\n## ", 1)[0]
    snippets = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(snippets) == 3
    namespace: dict[str, Any] = {}
    printed = io.StringIO()
    url = f"http://{mesh.address('router_http')}"
    for snippet in snippets:
        with contextlib.redirect_stdout(printed):
            exec(snippet.replace(README_URL, url), namespace)
    output = printed.getvalue()
    assert "Paris" in output and "cost avoided (USD):" in output
    assert namespace["final"].stop_reason == "end_turn" and namespace["final"].usage.output_tokens
    assert namespace["use"].name == "get_weather" and "21 C" in output


def test_a_plain_message(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="auto",
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": fresh("Explain write-ahead logs.")}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.model_extra and message.model_extra["sluice"]["trace_id"]


def test_a_stream_reassembled_by_the_sdk_helper(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="auto",
        max_tokens=200,
        messages=[{"role": "user", "content": fresh("Explain consensus.")}],
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == final.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


def test_a_stop_sequence_is_named_whole_and_streamed(client: anthropic.Anthropic) -> None:
    request: Any = {
        "model": "auto",
        "max_tokens": 100,
        "stop_sequences": ["Paris"],
        "messages": [{"role": "user", "content": fresh("What is the capital of France?")}],
    }
    message = client.messages.create(**request)
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "Paris")
    assert "Paris" not in message.content[0].text
    request["messages"][0]["content"] = fresh("What is the capital of France?")
    with client.messages.stream(**request) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "Paris")


def test_a_streamed_tool_call_and_a_tool_use_round_trip(client: anthropic.Anthropic) -> None:
    question = fresh("What is the weather in Lisbon?")
    with client.messages.stream(
        model="auto",
        max_tokens=200,
        tools=[WEATHER],
        messages=[{"role": "user", "content": question}],
    ) as stream:
        streamed = stream.get_final_message()
    assert streamed.stop_reason == "tool_use"
    use = next(block for block in streamed.content if block.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Lisbon"}
    messages: list[Any] = [
        {"role": "user", "content": question},
        {"role": "assistant", "content": streamed.content},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": "21 C and sunny"}
            ],
        },
    ]
    answer = client.messages.create(
        model="auto", max_tokens=200, tools=[WEATHER], messages=messages
    )
    assert answer.stop_reason == "end_turn" and "21 C" in answer.content[0].text  # type: ignore[union-attr]


def test_an_image_block(client: anthropic.Anthropic) -> None:
    image: Any = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }
    message = client.messages.create(
        model="vision",
        max_tokens=200,
        messages=[
            {"role": "user", "content": [{"type": "text", "text": fresh("What is this?")}, image]}
        ],
    )
    assert message.content[0].text and message.model == "gpt-4o"  # type: ignore[union-attr]


def test_a_missing_max_tokens_is_a_400_naming_it(client: anthropic.Anthropic) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.post("/v1/messages", body=body, cast_to=object)
    assert raised.value.status_code == 400
    assert raised.value.body["error"]["message"].startswith("max_tokens")  # type: ignore[index]


def test_a_wrong_key_is_a_401(mesh: Mesh) -> None:
    url = f"http://{mesh.address('router_http')}"
    with (
        anthropic.Anthropic(base_url=url, api_key="wrong", max_retries=0) as wrong,
        pytest.raises(anthropic.AuthenticationError) as raised,
    ):
        wrong.messages.create(
            model="auto", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def _lines(stages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (s["stage"], s["outcome"], s["tier"], s["model"], round(s["cost_usd"], 9)) for s in stages
    ]


_STAGES = {
    common_pb2.STAGE_CACHE: "cache",
    common_pb2.STAGE_COMPRESSOR: "compressor",
    common_pb2.STAGE_BATCHER: "batcher",
    common_pb2.STAGE_TIER: "tier",
    common_pb2.STAGE_JUDGE: "judge",
}
_OUTCOMES = {
    common_pb2.STAGE_OUTCOME_USED: "used",
    common_pb2.STAGE_OUTCOME_PASSED: "passed",
    common_pb2.STAGE_OUTCOME_REJECTED: "rejected",
    common_pb2.STAGE_OUTCOME_SKIPPED: "skipped",
    common_pb2.STAGE_OUTCOME_NOT_APPLICABLE: "not_applicable",
}


async def test_one_request_costs_the_same_through_every_door(
    client: anthropic.Anthropic, mesh: Mesh, channel: grpc.aio.Channel
) -> None:
    question = fresh("Name three uses of a write-ahead log.")
    messages: Any = [{"role": "user", "content": question}]
    via_messages = client.messages.create(
        model="chat", max_tokens=300, messages=messages, extra_body={"sluice": {"cache": False}}
    )
    url = f"http://{mesh.address('router_http')}/v1"
    with openai.OpenAI(base_url=url, api_key="dev", max_retries=0) as oai:
        via_openai = oai.chat.completions.create(
            model="chat", max_tokens=300, messages=messages, extra_body={"sluice": {"cache": False}}
        )
    request = ask(question, model_class="chat", cache_mode=pb.CACHE_MODE_BYPASS)
    request.sampling.max_tokens = 300
    via_grpc = await router_stub(channel).Complete(request, metadata=DEV_KEY)
    grpc_lines = [
        (
            _STAGES[s.stage],
            _OUTCOMES[s.outcome],
            s.tier,
            s.model,
            round(s.cost_nano_usd / 1e9, 9),
        )
        for s in via_grpc.cost.stages
    ]
    anthropic_lines = _lines(via_messages.model_extra["sluice"]["stages"])  # type: ignore[index]
    openai_lines = _lines(via_openai.model_extra["sluice"]["stages"])  # type: ignore[index]
    assert any(line[0] == "tier" and line[4] > 0 for line in anthropic_lines)
    assert anthropic_lines == openai_lines == grpc_lines
    assert via_messages.usage.input_tokens == via_openai.usage.prompt_tokens  # type: ignore[union-attr]
    assert via_messages.content[0].text == via_openai.choices[0].message.content  # type: ignore[union-attr]


def test_top_k_reaches_claude_tiers_and_is_refused_for_others(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model="claude",
        max_tokens=100,
        extra_body={"top_k": 5},
        messages=[{"role": "user", "content": fresh("Explain write-ahead logs.")}],
    )
    assert message.model == "claude-haiku-4-5" and message.content
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model="chat",
            max_tokens=100,
            extra_body={"top_k": 5},
            messages=[{"role": "user", "content": fresh("Explain write-ahead logs.")}],
        )
    assert "top_k" in str(refused.value) and "Qwen/Qwen3-8B" in str(refused.value)


def test_a_claude_tier_is_called_through_the_messages_api(
    client: anthropic.Anthropic, mesh: Mesh
) -> None:
    """The default policy's claude class: the dispatcher reaches Claude models through its
    `provider: anthropic` endpoints, which the simulator serves at /<region>/v1/messages."""
    message = client.messages.create(
        model="claude",
        max_tokens=200,
        messages=[{"role": "user", "content": fresh("Explain write-ahead logs.")}],
    )
    assert message.model == "claude-haiku-4-5" and message.content[0].text  # type: ignore[union-attr]
    [tier] = [s for s in message.model_extra["sluice"]["stages"] if s["stage"] == "tier"]  # type: ignore[index]
    assert (tier["model"], tier["outcome"]) == ("claude-haiku-4-5", "used")
    assert tier["cost_usd"] > 0
    url = f"http://{mesh.address('router_http')}/v1"
    with openai.OpenAI(base_url=url, api_key="dev", max_retries=0) as through_openai:
        answer = through_openai.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": fresh("Explain Raft.")}]
        )
    assert answer.model == "claude-haiku-4-5" and answer.choices[0].message.content

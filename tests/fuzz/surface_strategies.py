"""Hypothesis strategies for the chat surface beyond text (issue 15): tools and tool_choice,
tool round trips in the history, content parts with images, n, logprobs, seed, penalties,
the end user, metadata and stream options. Valid values for valid bodies, and the fields a
near-valid body may break (with the fields that depend on them, dropped with them)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as pb

NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=20)
# Cheap to draw: Hypothesis spends most of a run generating, so the bulky parts are built.
WORDS = st.sampled_from(["", "Current weather", "Local time in a city", "中文 🙂 \u200b"])
SCHEMA = st.sampled_from(
    [
        {"type": "object"},
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        {
            "type": "object",
            "properties": {"unit": {"enum": ["c", "f"]}, "days": {"type": "integer"}},
            "additionalProperties": False,
        },
    ]
)
IMAGE_URL = st.sampled_from(
    ["https://example.com/cat.png", "http://x.test/a.jpg", "data:image/png;base64,iVBORw0KGgo="]
)


# Valid function names, up to the 64 characters OpenAI allows.
NAMES = ["get_weather", "get_time", "f", "Search-2", "n" * 64, "under_score", "x9"]
NAME_LISTS = st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True)
DETAILS = st.sampled_from(["auto", "low", "high"])
# Up to OpenAI's 16 pairs, keys up to 64 and values up to 512 characters, built.
METADATA = st.integers(0, 16).map(
    lambda n: {f"k{i}" + "x" * (i * 3): "v" * (i * 32) for i in range(n)}
)


@st.composite
def tools(draw: st.DrawFn) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": draw(WORDS),
                "parameters": draw(SCHEMA),
                "strict": draw(st.booleans()),
            },
        }
        for name in draw(NAME_LISTS)
    ]


def tool_choice(offered: list[dict[str, Any]], pick: int) -> Any:
    """One of the modes (pick 0 to 2), or a function of `offered` by name."""
    if pick < 3:
        return ["none", "auto", "required"][pick]
    name = offered[(pick - 3) % len(offered)]["function"]["name"]
    return {"type": "function", "function": {"name": name}}


@st.composite
def tool_round_trip(draw: st.DrawFn, text: st.SearchStrategy[str]) -> list[dict[str, Any]]:
    """An assistant turn calling tools (content null), then a tool result for each call."""
    tag = draw(st.integers(0, 999))
    ids = [f"call_{tag}_{i}" for i in range(draw(st.integers(1, 3)))]
    calls = [
        {"id": i, "type": "function", "function": {"name": "f", "arguments": draw(WORDS)}}
        for i in ids
    ]
    results = [{"role": "tool", "tool_call_id": i, "content": draw(text)} for i in ids]
    return [{"role": "assistant", "content": None, "tool_calls": calls}, *results]


def parts(draw: st.DrawFn, text: str, image: bool) -> list[dict[str, Any]]:
    """The text as a text part, with an image part after it when `image`."""
    pieces: list[dict[str, Any]] = [{"type": "text", "text": text}]
    if image:
        url = {"url": draw(IMAGE_URL), "detail": draw(DETAILS)}
        pieces.append({"type": "image_url", "image_url": url})
    return pieces


# The new optional fields of a valid body (those that need no other field set).
OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "n": st.integers(1, 8),
    "seed": st.integers(-(2**63), 2**63 - 1),
    "logprobs": st.booleans(),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "metadata": METADATA,
    "modalities": st.just(["text"]),
    "service_tier": st.sampled_from(["auto", "default"]),
    "store": st.just(False),
    "safety_identifier": WORDS,
}
# Fields a near-valid body may break, and the fields that depend on each (dropped with it, so
# a refusal can only be about the broken field).
BREAKABLE: dict[str, tuple[str, ...]] = {
    "tools": ("tool_choice", "parallel_tool_calls"),
    "tool_choice": (),
    "parallel_tool_calls": (),
    "n": (),
    "seed": (),
    "logprobs": ("top_logprobs",),
    "top_logprobs": (),
    "presence_penalty": (),
    "frequency_penalty": (),
    "user": ("safety_identifier",),
    "safety_identifier": ("user",),
    "metadata": (),
    "stream_options": (),
    "modalities": (),
    "service_tier": (),
    "store": (),
    "stream": ("stream_options",),
}


def with_tools(body: dict[str, Any], draw: st.DrawFn) -> None:
    offered = draw(tools())
    body["tools"] = offered
    if draw(st.booleans()):
        body["tool_choice"] = tool_choice(offered, draw(st.integers(0, 6)))
    if draw(st.booleans()):
        body["parallel_tool_calls"] = draw(st.booleans())


def with_dependents(body: dict[str, Any], draw: st.DrawFn) -> None:
    """Fields valid only beside another: top_logprobs with logprobs, stream_options with
    stream, user agreeing with safety_identifier."""
    if body.get("logprobs") is True and draw(st.booleans()):
        body["top_logprobs"] = draw(st.integers(0, 20))
    if body.get("stream") is True and draw(st.booleans()):
        body["stream_options"] = {"include_usage": draw(st.booleans())}
    if "safety_identifier" in body and "user" in body:
        body["user"] = body["safety_identifier"]


# --- gRPC -------------------------------------------------------------------------------------

WEATHER = common_pb2.ToolFunction(name="get_weather", parameters_json='{"type": "object"}')


def grpc_surface_case(
    draw: st.DrawFn, request: pb.CompleteRequest, field: str, text: st.SearchStrategy[str]
) -> None:
    """Breaks `field` of a valid request (one of GRPC_FIELDS)."""
    if field == "tools":
        junk = st.sampled_from(["[1]", "{nope", '{"type": 3}', '{"type": "string"}', "{}"]) | text
        request.tools.functions.add(name=draw(text | NAME), parameters_json=draw(junk))
    elif field == "tools.choice.mode":
        request.tools.functions.append(WEATHER)
        request.tools.choice.mode = draw(st.integers(-(2**31), 2**31 - 1))  # type: ignore[assignment]
        request.tools.choice.function_name = "get_weather"
    elif field == "tool_choice":
        request.tools.functions.append(WEATHER)
        request.tools.choice.mode = common_pb2.TOOL_CHOICE_MODE_FUNCTION
        request.tools.choice.function_name = draw(text)
    elif field == "n is":
        request.sampling.n = draw(st.integers(-(2**31), 2**31 - 1))
    elif field == "top_logprobs":
        request.sampling.logprobs = draw(st.booleans())
        request.sampling.top_logprobs = draw(st.integers(-(2**31), 2**31 - 1))
    elif field == "presence_penalty":
        request.sampling.presence_penalty = draw(st.floats())
    elif field == "tool_call_id":
        request.messages.add(role=common_pb2.ROLE_TOOL, content="21", tool_call_id=draw(text))
    elif field == "user":
        request.context.end_user = draw(st.integers(0, 600).map("u".__mul__))
    elif field == "metadata":
        pairs = st.dictionaries(st.text(max_size=80), st.text(max_size=600), max_size=20)
        request.context.metadata.update(draw(pairs))
    elif field == "image":
        message = request.messages[0]
        message.parts.add(text=message.content)
        message.parts.add(image_url=common_pb2.ImageUrl(url=draw(text | IMAGE_URL)))


GRPC_FIELDS = [
    "tools", "tools.choice.mode", "tool_choice", "n is", "top_logprobs", "presence_penalty",
    "tool_call_id", "user", "metadata", "image",
]  # fmt: skip

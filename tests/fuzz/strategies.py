"""Hypothesis strategies for requests to the router's front doors: valid ones, near-valid ones
(one field replaced by something hostile) and hostile bodies. Each case says which field it
broke, so a test can check that a refusal names it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2 as pb

from tests.fuzz.surface_strategies import (
    BREAKABLE,
    GRPC_FIELDS,
    OPTIONAL,
    grpc_surface_case,
    parts,
    tool_round_trip,
    tools,
    with_dependents,
    with_tools,
)

# Per `make test` run, across both doors; SLUICE_FUZZ_EXAMPLES=50000 for a long run.
TOTAL_EXAMPLES = int(os.environ.get("SLUICE_FUZZ_EXAMPLES", "6000"))
ROLES = ["system", "user", "assistant", "tool", "developer"]

# Printable text, odd Unicode included (zero-width, RTL marks, emoji, CJK, combining marks).
ODD = st.sampled_from(["\u200b", "\u200d", "\ufeff", "\u202e", "\u0301", "🙂", "中", "\x00", "\t"])
TEXT = st.text(max_size=40) | st.lists(ODD | st.text(max_size=3), max_size=8).map("".join)
VISIBLE = st.tuples(TEXT, st.text(alphabet="abcxyz", min_size=1, max_size=5)).map("".join)
# Long strings are built, not drawn character by character, so they cost Hypothesis nothing.
HUGE_TEXT = st.tuples(st.sampled_from(["a", "ab ", "\u200b", "中", "9"]), st.integers(1, 50_000))
HUGE_TEXT_STR = HUGE_TEXT.map(lambda pair: pair[0] * pair[1])
# A prompt that can be long but always shows something.
PROMPT = VISIBLE | HUGE_TEXT.map(lambda pair: "q " + pair[0] * pair[1])


def _nest(depth: int) -> Any:
    value: Any = "x"
    for index in range(depth):
        value = [value] if index % 2 else {"k": value}
    return value


# Anything JSON can carry, hostile values first.
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**31 - 2, max_value=2**70),
    st.integers(min_value=-(2**70), max_value=-1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, 0.0, -0.0]),
    TEXT,
    HUGE_TEXT_STR,
    st.integers(1, 300).map(_nest),
    st.lists(st.integers() | TEXT, max_size=5),
    st.dictionaries(TEXT, st.integers() | TEXT, max_size=4),
)


def _message(role: str, content: Any) -> dict[str, Any]:
    return {"role": role, "content": content}


MODELS = ["auto", "chat", "", None]
# Optional fields of a valid body, each with its valid values.
OPTIONAL_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1),
    "max_tokens": st.integers(0, 2**31 - 1),
    "max_completion_tokens": st.integers(0, 2**31 - 1) | st.none(),
    "stop": st.lists(VISIBLE, max_size=4) | VISIBLE,
    "stream": st.booleans(),
    "response_format": st.sampled_from(
        [
            {"type": "text"},
            {"type": "json_object"},
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            {"type": "json_schema", "json_schema": {"name": "A-1", "strict": True, "schema": {}}},
        ]
    ),
    "sluice": st.sampled_from([{"cache": False}, {"cache": True}, {}]),
    "user": TEXT,
    **OPTIONAL,
}
OPTIONAL_KEYS = st.lists(st.sampled_from(sorted(OPTIONAL_FIELDS)), unique=True)


@st.composite
def valid_bodies(draw: st.DrawFn, image_class: str | None = None) -> dict[str, Any]:
    """A valid body; with `image_class` (a model class whose tiers all take images), some
    name it and hold an image."""
    turns = draw(st.lists(st.tuples(st.sampled_from(ROLES), VISIBLE), max_size=3))
    history = [_message(role, text) for role, text in turns if role != "tool"]
    if draw(st.booleans()):
        history += draw(tool_round_trip(VISIBLE))
    model = draw(st.sampled_from([*MODELS, image_class] if image_class else MODELS))
    content: Any = draw(PROMPT)
    if draw(st.booleans()):
        with_image = image_class is not None and model == image_class and draw(st.booleans())
        content = parts(draw, content, image=with_image)
    body: dict[str, Any] = {"messages": [*history, _message("user", content)]}
    if model is not None:
        body["model"] = model
    for key in draw(OPTIONAL_KEYS):
        body[key] = draw(OPTIONAL_FIELDS[key])
    if draw(st.booleans()):
        with_tools(body, draw)
    with_dependents(body, draw)
    return body


@dataclass(frozen=True)
class HttpCase:
    """A request body; `field` is the one a refusal must name, "" when any refusal is wrong
    (a valid body), or None when none is predictable (hostile bytes)."""

    body: bytes
    field: str | None

    def __repr__(self) -> str:  # bounded: a failing example's body may be megabytes
        return f"HttpCase(field={self.field!r}, {len(self.body)} bytes: {self.body[:300]!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis's printer
        printer.text(repr(self))


def _dump(value: Any) -> bytes:
    # json, not orjson: it writes integers of any size, as a hostile client might.
    return json.dumps(value, ensure_ascii=False).encode()


@st.composite
def near_valid(draw: st.DrawFn, image_class: str | None = None) -> HttpCase:
    body = draw(valid_bodies(image_class))
    field = draw(
        st.sampled_from(
            [
                "model", "messages", "temperature", "top_p", "max_tokens",
                "max_completion_tokens", "stop", "stream", "response_format", "sluice",
                *BREAKABLE,
            ]
        )
    )  # fmt: skip
    for dependent in BREAKABLE.get(field, ()):
        body.pop(dependent, None)
    body[field] = draw(JUNK)
    return HttpCase(_dump(body), field)


@st.composite
def broken_message(draw: st.DrawFn, image_class: str | None = None) -> HttpCase:
    body = draw(valid_bodies(image_class))
    message = dict(body["messages"][-1])
    key = draw(
        st.sampled_from(["role", "content", "name", "tool_calls", "tool_call_id", "refusal"])
    )
    message[key] = draw(JUNK | st.lists(JUNK, max_size=3))
    body["messages"][-1] = message
    return HttpCase(_dump(body), "messages")


@st.composite
def broken_tool(draw: st.DrawFn, image_class: str | None = None) -> HttpCase:
    """A valid body whose one tool has one field replaced by something hostile."""
    body = draw(valid_bodies(image_class))
    body.pop("tool_choice", None)
    offered = draw(tools())
    function = offered[0]["function"]
    function[draw(st.sampled_from(["name", "description", "parameters", "strict"]))] = draw(JUNK)
    body["tools"] = offered
    return HttpCase(_dump(body), "tools")


HOSTILE_BYTES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b'"x"',
            b'{"messages": NaN}',
            b'{"temperature": Infinity, "messages": []}',
            b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
            b'{"a":' * 2000,
        ]
    ),
    st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth),
)


def http_cases(image_class: str | None = None) -> st.SearchStrategy[HttpCase]:
    """Valid, near-valid and hostile bodies; `image_class` as for valid_bodies."""
    return st.one_of(
        valid_bodies(image_class).map(lambda body: HttpCase(_dump(body), "")),
        near_valid(image_class),
        broken_message(image_class),
        broken_tool(image_class),
        HOSTILE_BYTES.map(lambda raw: HttpCase(raw, None)),
    )


# --- gRPC ---------------------------------------------------------------------------------

INT32 = st.integers(-(2**31), 2**31 - 1)
FLOAT32 = st.floats(width=32)


@dataclass(frozen=True)
class GrpcCase:
    request: pb.CompleteRequest
    field: str

    def __repr__(self) -> str:
        text = str(self.request)
        return f"GrpcCase(field={self.field!r}, {len(text)} chars: {text[:300]!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@st.composite
def grpc_cases(draw: st.DrawFn) -> GrpcCase:
    """A valid CompleteRequest, with one field (or none: field "") set to something hostile."""
    turns = [common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=draw(PROMPT))]
    request = pb.CompleteRequest(messages=turns)
    field = draw(
        st.sampled_from(
            [
                "", "model_class", "messages", "sampling.temperature", "sampling.top_p",
                "sampling.max_tokens", "sampling.stop", "cache_mode", "context.request_id",
                "context.max_cost_nano_usd", "response_format", *GRPC_FIELDS,
            ]
        )
    )  # fmt: skip
    if field in GRPC_FIELDS:
        grpc_surface_case(draw, request, field, TEXT)
        return GrpcCase(request, field)
    if field == "model_class":
        request.model_class = draw(TEXT | HUGE_TEXT_STR)
    elif field == "messages":
        request.messages.add(role=draw(INT32), content=draw(TEXT), name=draw(TEXT))
        if draw(st.booleans()):
            request.messages[0].role = draw(INT32)  # type: ignore[assignment]
    elif field in ("sampling.temperature", "sampling.top_p"):
        setattr(request.sampling, field.split(".")[1], draw(FLOAT32))
    elif field == "sampling.max_tokens":
        request.sampling.max_tokens = draw(INT32)
    elif field == "sampling.stop":
        request.sampling.stop.extend(draw(st.lists(TEXT, max_size=8)))
    elif field == "cache_mode":
        request.cache_mode = draw(INT32)  # type: ignore[assignment]
    elif field == "context.request_id":
        request.context.request_id = draw(TEXT | HUGE_TEXT_STR)
    elif field == "context.max_cost_nano_usd":
        request.context.max_cost_nano_usd = draw(st.integers(-(2**63), 2**63 - 1))
    elif field == "response_format":
        request.response_format.type = draw(INT32)  # type: ignore[assignment]
        request.response_format.json_schema = draw(TEXT | st.sampled_from(['{"type": 3}', "{}"]))
    return GrpcCase(request, field)

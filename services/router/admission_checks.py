"""Admission's checks of what a chat request carries beyond text, shared by both front doors:
tools and tool_choice, tool-call turns, image parts, choices and logprobs, the end user and
metadata.

Each failure is a FieldError: `param` names the field as the OpenAI door reports it
(`tools[0].function.name`, `messages[3].tool_call_id`), and the message, which names it too,
is what a gRPC caller reads after INVALID_ARGUMENT.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import jsonschema

from services.router.policy import ModelClass
from shared.chat import ImagePart, Role, Sampling, ToolChoiceMode, ToolSet, Turn
from shared.errors import InvalidRequest, quoted

# OpenAI's rule for function and json_schema names.
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# OpenAI's limits: tools per request, top_logprobs, metadata pairs and their sizes.
MAX_TOOLS = 128
MAX_TOP_LOGPROBS = 20
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
# Choices per request: each is a whole answer the caller pays for, and the cache, gates and
# batcher handle them one request at a time; 8 keeps one request's cost bounded.
MAX_CHOICES = 8
# An end-user id is an opaque tag passed to the provider; OpenAI's safety_identifier allows 64.
MAX_END_USER_CHARS = 256
# Deeper schemas are refused before jsonschema (recursive) walks them.
MAX_SCHEMA_DEPTH = 64
IMAGE_DETAILS = frozenset({"", "auto", "low", "high"})
IMAGE_SCHEMES = ("https://", "http://", "data:image/")


class FieldError(InvalidRequest):
    """One request field is wrong; `param` names it, as OpenAI's error shape does."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def bad(param: str, problem: str) -> FieldError:
    """A FieldError whose message starts with the field's name."""
    return FieldError(param, f"{param} {problem}")


def json_depth(document: Any) -> int:
    """How deeply JSON objects and arrays nest, counted without recursion."""
    deepest = 0
    pending = [(document, 1)]
    while pending:
        node, depth = pending.pop()
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        before = len(pending)
        pending.extend((child, depth + 1) for child in children)
        if len(pending) > before:
            deepest = max(deepest, depth)
    return deepest


def check_schema_text(param: str, text: str) -> dict[str, Any]:
    """A JSON Schema given as text: JSON, an object, not nested too deeply, and valid against
    its metaschema."""
    try:
        schema = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        reason = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deeply"
        raise bad(param, f"is not JSON: {reason}") from None
    if not isinstance(schema, dict):
        raise bad(param, f"must be a JSON Schema object, not {type(schema).__name__}")
    if json_depth(schema) > MAX_SCHEMA_DEPTH:
        raise bad(param, f"nests deeper than {MAX_SCHEMA_DEPTH} levels")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as error:
        raise bad(param, f"is not a valid schema: {quoted(error.message, 200)}") from None
    except (RecursionError, ValueError, TypeError, LookupError) as error:
        # A $schema or $ref the validator cannot resolve, or a pathologically deep schema.
        raise bad(param, f"is not a usable schema: {quoted(str(error), 200)}") from None
    return schema


def validate_tools(tools: ToolSet) -> None:
    if len(tools.functions) > MAX_TOOLS:
        raise bad("tools", f"has {len(tools.functions)} tools; at most {MAX_TOOLS}")
    seen: set[str] = set()
    for index, function in enumerate(tools.functions):
        where = f"tools[{index}].function"
        if not function.name:
            raise bad(
                f"{where}.name", f"is missing; every tool needs a name ({NAME_PATTERN.pattern})"
            )
        if not NAME_PATTERN.match(function.name):
            raise bad(f"{where}.name", f"{quoted(function.name)} must match {NAME_PATTERN.pattern}")
        if function.name in seen:
            raise bad(f"{where}.name", f"{function.name!r} is offered twice")
        seen.add(function.name)
        if function.parameters_json:
            schema = check_schema_text(f"{where}.parameters", function.parameters_json)
            if schema.get("type", "object") != "object":
                raise bad(f"{where}.parameters", "must describe an object (the call's arguments)")
    _validate_tool_choice(tools)


def _validate_tool_choice(tools: ToolSet) -> None:
    if tools.choice in (ToolChoiceMode.REQUIRED, ToolChoiceMode.FUNCTION) and not tools.offered:
        raise bad("tool_choice", f"is {tools.choice.value} but the request offers no tools")
    if tools.choice is ToolChoiceMode.FUNCTION and tools.function(tools.function_name) is None:
        offered = ", ".join(repr(f.name) for f in tools.functions)
        raise bad(
            "tool_choice",
            f"names {quoted(tools.function_name)}, which is not an offered tool ({offered})",
        )


def validate_tool_turns(turns: Sequence[Turn]) -> None:
    """Tool calls only in assistant turns, each with an id and a name; each tool turn answers a
    call an earlier assistant turn made."""
    calls: set[str] = set()
    for index, turn in enumerate(turns):
        where = f"messages[{index}]"
        if turn.tool_calls and turn.role is not Role.ASSISTANT:
            raise bad(
                f"{where}.tool_calls", f"only an assistant message makes calls, not {turn.role}"
            )
        for position, call in enumerate(turn.tool_calls):
            at = f"{where}.tool_calls[{position}]"
            if not call.id:
                raise bad(f"{at}.id", "is missing; a tool message answers a call by its id")
            if not call.name:
                raise bad(f"{at}.function.name", "is missing")
        calls.update(call.id for call in turn.tool_calls)
        if turn.role is Role.TOOL and turn.tool_call_id not in calls:
            raise bad(
                f"{where}.tool_call_id",
                f"{quoted(turn.tool_call_id)} answers no tool call of an earlier assistant message",
            )
        if turn.role is not Role.TOOL and turn.tool_call_id:
            raise bad(f"{where}.tool_call_id", "is only for a tool message")
        if turn.refusal and turn.role is not Role.ASSISTANT:
            raise bad(f"{where}.refusal", "is only for an assistant message")


def validate_choices(sampling: Sampling) -> None:
    """n, logprobs and the penalties."""
    if not 1 <= sampling.n <= MAX_CHOICES:
        raise bad("n", f"is {sampling.n}; it must be within [1, {MAX_CHOICES}]")
    if not 0 <= sampling.top_logprobs <= MAX_TOP_LOGPROBS:
        raise bad(
            "top_logprobs", f"is {sampling.top_logprobs}; it must be within [0, {MAX_TOP_LOGPROBS}]"
        )
    if sampling.top_logprobs and not sampling.logprobs:
        raise bad("top_logprobs", "needs logprobs: true")
    for name, value in (
        ("presence_penalty", sampling.presence_penalty),
        ("frequency_penalty", sampling.frequency_penalty),
    ):
        if value is not None and not (math.isfinite(value) and -2 <= value <= 2):
            raise bad(name, f"is {value}; it must be within [-2, 2]")


def validate_caller_tags(end_user: str, metadata: Sequence[tuple[str, str]]) -> None:
    if len(end_user) > MAX_END_USER_CHARS:
        raise bad("user", f"has {len(end_user)} characters; at most {MAX_END_USER_CHARS}")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise bad("metadata", f"has {len(metadata)} pairs; at most {MAX_METADATA_PAIRS}")
    for key, value in metadata:
        if not 0 < len(key) <= MAX_METADATA_KEY_CHARS:
            raise bad(
                "metadata",
                f"key {quoted(key)} must have 1 to {MAX_METADATA_KEY_CHARS} characters",
            )
        if len(value) > MAX_METADATA_VALUE_CHARS:
            raise bad(
                "metadata",
                f"value of {quoted(key)} has {len(value)} characters; "
                f"at most {MAX_METADATA_VALUE_CHARS}",
            )


def unable_tier(model_class: ModelClass, able: Callable[[str], bool], what: str) -> str | None:
    """Names the class's first tier whose model lacks a capability (`able`), or None: a request
    that needs it must be refused, since the cascade may send it to any tier."""
    tier = next((t for t in model_class.tiers if not able(t.model)), None)
    if tier is None:
        return None
    return (
        f"model {tier.model!r} (tier {tier.index} of model class {model_class.name!r}) "
        f"cannot take {what}"
    )


def validate_top_k(
    sampling: Sampling, model_class: ModelClass, accepts_top_k: Callable[[str], bool]
) -> None:
    """top_k only when every tier the request may reach takes it: the cascade may send the
    request to any of them, and dropping it on one would change the answer unannounced."""
    if sampling.top_k is None:
        return
    if sampling.top_k < 1:
        raise bad("top_k", f"is {sampling.top_k}; it must be at least 1")
    unable = unable_tier(model_class, accepts_top_k, "top_k")
    if unable:
        raise bad(
            "top_k",
            f"{unable} (OpenAI's API has none); send it to a model class whose tiers all take "
            "it, such as Claude models",
        )


def validate_images(
    turns: Sequence[Turn], model_class: ModelClass, accepts_images: Callable[[str], bool]
) -> None:
    """Image parts only in user turns, with a usable URL, and only when every tier the request
    may reach takes images: the cascade may send it to any of them."""
    for index, turn in enumerate(turns):
        for position, part in enumerate(turn.parts):
            if not isinstance(part, ImagePart):
                continue
            where = f"messages[{index}].content[{position}]"
            if turn.role is not Role.USER:
                raise bad(where, f"is an image; only user messages hold images, not {turn.role}")
            if not part.url.startswith(IMAGE_SCHEMES):
                raise bad(
                    f"{where}.image_url.url",
                    f"{quoted(part.url)} must be an http(s) URL or a data:image/ URL",
                )
            if part.detail not in IMAGE_DETAILS:
                raise bad(
                    f"{where}.image_url.detail", f"{quoted(part.detail)} is not auto, low or high"
                )
            unable = unable_tier(model_class, accepts_images, "images")
            if unable:
                raise bad(
                    where,
                    f"is an image, but {unable}; send images to a model class whose tiers all "
                    "take them",
                )

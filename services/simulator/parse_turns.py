"""Validation of a request's conversation and tool surface: messages (with content parts, tool
calls and tool results), `tools`, `tool_choice` and `response_format`.

Each error is a BadRequest whose `param` is the field's path, as OpenAI reports it
(`messages[2].tool_call_id`, `tools[0].function.name`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jsonschema

from services.simulator.request import (
    BadRequest,
    Message,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolChoice,
)

# OpenAI's rule for function and json_schema names.
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MAX_TOOLS = 128


def _text_of_parts(where: str, role: str, parts: list[Any]) -> tuple[str, int]:
    """The joined text of content parts and the number of image parts."""
    texts: list[str] = []
    images = 0
    for index, part in enumerate(parts):
        at = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" or (kind == "refusal" and role == "assistant"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise BadRequest(f"{at}.{kind} must be a string", f"{at}.{kind}")
            texts.append(text)
        elif kind == "image_url" and role == "user":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, Mapping) else None
            if not isinstance(url, str) or not url:
                raise BadRequest(
                    f"{at}.image_url.url must be a non-empty string", f"{at}.image_url"
                )
            images += 1
        else:
            allowed = "text or image_url" if role == "user" else "text"
            raise BadRequest(f"{at}.type must be {allowed} in a {role} message", f"{at}.type")
    return "".join(texts), images


def _content(where: str, role: str, raw: Any) -> tuple[str, int]:
    if isinstance(raw, str):
        return raw, 0
    if raw is None and role == "assistant":
        return "", 0
    if raw is None:
        raise BadRequest(f"{where}.content is required in a {role} message", f"{where}.content")
    if isinstance(raw, list):
        return _text_of_parts(f"{where}.content", role, raw)
    raise BadRequest(
        f"{where}.content must be a string or a list of content parts", f"{where}.content"
    )


def _tool_calls(where: str, raw: Any) -> tuple[ToolCall, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise BadRequest(f"{where}.tool_calls must be a non-empty array", f"{where}.tool_calls")
    calls = []
    for index, call in enumerate(raw):
        at = f"{where}.tool_calls[{index}]"
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or call.get("type", "function") != "function":
            raise BadRequest(f"{at} must be a function call with a 'function' object", at)
        call_id, name, arguments = call.get("id"), function.get("name"), function.get("arguments")
        if not isinstance(call_id, str) or not call_id:
            raise BadRequest(f"{at}.id must be a non-empty string", f"{at}.id")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{at}.function.name must be a non-empty string", f"{at}.function")
        if not isinstance(arguments, str):
            raise BadRequest(f"{at}.function.arguments must be a string", f"{at}.function")
        calls.append(ToolCall(call_id, name, arguments))
    return tuple(calls)


def _message(where: str, raw: Any, call_ids: set[str]) -> Message:
    if not isinstance(raw, Mapping):
        raise BadRequest(f"{where} must be an object", where)
    role = raw.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise BadRequest(f"{where}.role must be one of {', '.join(sorted(ROLES))}", f"{where}.role")
    calls = _tool_calls(where, raw.get("tool_calls")) if role == "assistant" else ()
    text, images = _content(where, role, raw.get("content"))
    tool_call_id = None
    if role == "tool":
        tool_call_id = raw.get("tool_call_id")
        if not isinstance(tool_call_id, str) or tool_call_id not in call_ids:
            raise BadRequest(
                f"{where}.tool_call_id must name a tool call of an earlier assistant message",
                f"{where}.tool_call_id",
            )
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise BadRequest(f"{where}.name must be a string", f"{where}.name")
    return Message(role, text, images, calls, tool_call_id)


def parse_messages(raw: Any) -> tuple[Message, ...]:
    if raw is None:
        raise BadRequest("'messages' is required", "messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("'messages' must be a non-empty array", "messages")
    messages: list[Message] = []
    call_ids: set[str] = set()
    for index, item in enumerate(raw):
        message = _message(f"messages[{index}]", item, call_ids)
        call_ids.update(call.id for call in message.tool_calls)
        messages.append(message)
    return tuple(messages)


def check_schema(where: str, schema: Any) -> Mapping[str, Any]:
    """A JSON schema object, checked against its metaschema."""
    if not isinstance(schema, Mapping):
        raise BadRequest(f"{where} must be a JSON schema object", where)
    try:
        jsonschema.validators.validator_for(schema).check_schema(dict(schema))
    except jsonschema.exceptions.SchemaError as error:
        raise BadRequest(f"{where} is not a valid JSON schema: {error.message}", where) from None
    except (RecursionError, ValueError, TypeError, LookupError) as error:
        # A $schema or $ref the validator cannot resolve, or a pathologically deep schema.
        raise BadRequest(f"{where} is not a usable JSON schema: {error}", where) from None
    return schema


def _tool(where: str, raw: Any) -> Tool:
    if not isinstance(raw, Mapping) or raw.get("type") != "function":
        raise BadRequest(f"{where}.type must be 'function'", f"{where}.type")
    function = raw.get("function")
    if not isinstance(function, Mapping):
        raise BadRequest(f"{where}.function must be an object", f"{where}.function")
    name = function.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise BadRequest(
            f"{where}.function.name must match {NAME_PATTERN.pattern}", f"{where}.function.name"
        )
    description = function.get("description", "")
    if not isinstance(description, str):
        raise BadRequest(
            f"{where}.function.description must be a string", f"{where}.function.description"
        )
    params_at = f"{where}.function.parameters"
    parameters = check_schema(params_at, function.get("parameters", {"type": "object"}))
    if parameters.get("type", "object") != "object":
        raise BadRequest(f"{params_at} must be a schema of type 'object'", params_at)
    strict = function.get("strict", False)
    if not isinstance(strict, bool | None):
        raise BadRequest(f"{where}.function.strict must be true or false", f"{where}.function")
    return Tool(name, description, parameters, bool(strict))


def parse_tools(raw: Any) -> tuple[Tool, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_TOOLS:
        raise BadRequest(f"'tools' must be an array of at most {MAX_TOOLS} tools", "tools")
    tools = tuple(_tool(f"tools[{index}]", item) for index, item in enumerate(raw))
    names = [tool.name for tool in tools]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise BadRequest(
                f"tools[{index}].function.name {name!r} is used twice", f"tools[{index}]"
            )
    return tools


def parse_tool_choice(raw: Any, tools: tuple[Tool, ...]) -> ToolChoice:
    """OpenAI's default is `auto` with tools and `none` without."""
    if raw is None:
        return ToolChoice("auto" if tools else "none")
    if raw in ("none", "auto", "required"):
        if raw != "none" and not tools:
            raise BadRequest("'tool_choice' needs 'tools'", "tool_choice")
        return ToolChoice(str(raw))
    function = raw.get("function") if isinstance(raw, Mapping) else None
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(raw, Mapping) or raw.get("type") != "function" or not isinstance(name, str):
        raise BadRequest(
            "'tool_choice' must be none, auto, required or "
            '{"type": "function", "function": {"name": ...}}',
            "tool_choice",
        )
    if name not in {tool.name for tool in tools}:
        raise BadRequest(f"'tool_choice' names {name!r}, which is not in 'tools'", "tool_choice")
    return ToolChoice("function", name)


def parse_response_format(raw: Any) -> ResponseFormat:
    if raw is None:
        return ResponseFormat()
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if kind in ("text", "json_object"):
        return ResponseFormat(str(kind))
    if kind != "json_schema":
        raise BadRequest(
            "'response_format.type' must be text, json_object or json_schema",
            "response_format.type",
        )
    spec = raw.get("json_schema")
    if not isinstance(spec, Mapping):
        raise BadRequest(
            "'response_format.json_schema' must be an object", "response_format.json_schema"
        )
    name = spec.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise BadRequest(
            f"'response_format.json_schema.name' must match {NAME_PATTERN.pattern}",
            "response_format.json_schema.name",
        )
    strict = spec.get("strict", False)
    if not isinstance(strict, bool | None):
        raise BadRequest(
            "'response_format.json_schema.strict' must be true or false",
            "response_format.json_schema.strict",
        )
    schema = spec.get("schema")
    if schema is not None:
        schema = check_schema("response_format.json_schema.schema", schema)
    return ResponseFormat("json_schema", name, schema, bool(strict))

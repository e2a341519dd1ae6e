"""The tool-call gate: a cheap tier's tool calls are served only when they would work.

An agent runs whatever tool call it is given, so a wrong one costs more than an escalation: a
call of a function that was never offered, arguments that are not JSON, or arguments that break
the function's schema make the agent fail or act on garbage. The gate checks each call the way
the caller's tool runner will, against the request's own tool definitions:

- the answer respects `tool_choice` (none, required, a named function) and
  `parallel_tool_calls: false`;
- each call names an offered function and has an id;
- its arguments parse as a JSON object that validates against that function's parameter schema
  (required fields, types, enums, nested objects: whatever JSON Schema states).

A failure's reason starts with a short kind (`unknown_function: ...`), which the cascade puts on
the tier's span and cost line, so the reasons can be counted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import jsonschema

from shared.chat import ToolCall, ToolChoiceMode, ToolSet

GATE = "tool_call"


class ToolCallProblem(Exception):
    """What is wrong with an answer's tool calls: `kind` is a short label for counting."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def check_tool_calls(calls: Sequence[ToolCall], tools: ToolSet) -> None:
    """Raises ToolCallProblem when the calls would not work for the caller's tool runner."""
    _check_choice(calls, tools)
    seen: set[str] = set()
    for position, call in enumerate(calls):
        where = f"tool_calls[{position}]"
        if not call.id:
            raise ToolCallProblem("missing_id", f"{where} has no id")
        if call.id in seen:
            raise ToolCallProblem("duplicate_id", f"{where} repeats the id {call.id!r}")
        seen.add(call.id)
        _check_arguments(where, call, tools)


def _check_choice(calls: Sequence[ToolCall], tools: ToolSet) -> None:
    if calls and not tools.offered:
        raise ToolCallProblem("not_offered", "the answer calls tools but the request offered none")
    if tools.choice is ToolChoiceMode.NONE and calls:
        raise ToolCallProblem("tool_choice", "tool_choice is none but the answer calls a tool")
    if tools.choice is ToolChoiceMode.REQUIRED and not calls:
        raise ToolCallProblem("tool_choice", "tool_choice is required but the answer calls none")
    if tools.choice is ToolChoiceMode.FUNCTION:
        wrong = [call.name for call in calls if call.name != tools.function_name]
        if not calls or wrong:
            raise ToolCallProblem(
                "tool_choice",
                f"tool_choice names {tools.function_name!r} but the answer calls "
                f"{', '.join(repr(c.name) for c in calls) or 'no function'}",
            )
    if tools.parallel_tool_calls is False and len(calls) > 1:
        raise ToolCallProblem(
            "parallel", f"parallel_tool_calls is false but the answer makes {len(calls)} calls"
        )


def _check_arguments(where: str, call: ToolCall, tools: ToolSet) -> None:
    function = tools.function(call.name)
    if function is None:
        offered = ", ".join(repr(f.name) for f in tools.functions)
        raise ToolCallProblem(
            "unknown_function", f"{where} calls {call.name[:64]!r}, not one of {offered}"
        )
    try:
        arguments = json.loads(call.arguments or "{}")
    except json.JSONDecodeError as error:
        raise ToolCallProblem(
            "arguments_not_json", f"{where} arguments: {error.msg} at char {error.pos}"
        ) from None
    if not isinstance(arguments, dict):
        raise ToolCallProblem("arguments_not_object", f"{where} arguments are not a JSON object")
    if not function.parameters_json:
        return
    schema = json.loads(function.parameters_json)
    violation = jsonschema.exceptions.best_match(
        jsonschema.validators.validator_for(schema)(schema).iter_errors(arguments)
    )
    if violation is not None:
        path = "/".join(str(p) for p in violation.absolute_path) or "the arguments"
        raise ToolCallProblem(
            "schema", f"{where} ({call.name}) at {path}: {violation.message[:200]}"
        )

"""Which tools a simulated model calls, and the calls themselves.

The rule, the same for every model so that a cheap tier and the baseline agree on the shape:

- `tool_choice: none`, or no tools: a text answer.
- `tool_choice: {"type": "function", ...}`: a call to that function.
- `tool_choice: required`: a call to the tool that best matches the last user message (the
  first tool when none matches).
- `tool_choice: auto` (the default with tools): a call to the best-matching tool; a text answer
  when no tool matches, or when the last turn is a tool result (the model answers with it).

A tool matches by the words its name (split at `_`, `-` and case changes) and description share
with the last user message, ignoring common words; the tool sharing most wins, ties going to the
earlier tool. With `parallel_tool_calls` (the default) and two matching tools, the model calls
both. Arguments come from the function's parameter schema (json_gen.py).
"""

from __future__ import annotations

import hashlib
import re

import orjson

from services.simulator.json_gen import generate
from services.simulator.malform import broken_document, unknown_name
from services.simulator.request import ChatRequest, Message, Tool, ToolCall

_WORD = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MARKER = re.compile(r"\[sim:[^\]]*\]")
_COMMON = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "from",
        "that",
        "this",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "how",
        "when",
        "where",
        "why",
        "are",
        "was",
        "were",
        "get",
        "set",
        "can",
        "could",
        "would",
        "should",
        "will",
        "you",
        "your",
        "our",
        "their",
        "there",
        "here",
        "have",
        "has",
        "had",
        "not",
        "any",
        "all",
        "please",
        "tell",
        "give",
        "show",
        "use",
        "call",
        "make",
        "find",
        "about",
        "into",
        "onto",
        "over",
        "some",
    ]
)
_TOOL_RESULT_CHARS = 200


def _words(text: str) -> set[str]:
    spaced = _CAMEL.sub(" ", _MARKER.sub(" ", text)).lower()
    return {w.removesuffix("s") for w in _WORD.findall(spaced) if len(w) > 2} - _COMMON


def ranked_tools(tools: tuple[Tool, ...], prompt: str) -> list[Tool]:
    """The tools sharing words with prompt, most shared first (ties: the earlier tool)."""
    asked = _words(prompt)
    scored = [
        (len(asked & _words(f"{tool.name} {tool.description}")), -index, tool)
        for index, tool in enumerate(tools)
    ]
    return [tool for score, _, tool in sorted(scored, key=lambda s: s[:2], reverse=True) if score]


def planned_tools(chat: ChatRequest) -> tuple[Tool, ...]:
    """The tools this turn calls; () means a text answer."""
    choice = chat.tool_choice
    if not chat.tools or choice.mode == "none":
        return ()
    if choice.mode == "function":
        named = chat.tool_named(choice.function or "")
        return (named,) if named is not None else ()
    ranked = ranked_tools(chat.tools, chat.last_user_text())
    if choice.mode == "auto" and (chat.messages[-1].role == "tool" or not ranked):
        return ()
    ranked = ranked or [chat.tools[0]]
    return tuple(ranked[: 2 if chat.parallel_tool_calls else 1])


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\0".join(parts).encode()).digest()


def make_calls(
    chat: ChatRequest, tools: tuple[Tool, ...], variant: str, malform: str | None
) -> tuple[ToolCall, ...]:
    """Calls to tools with schema-valid arguments; malform (a tool_* malformation) spoils the
    first call."""
    prompt = chat.last_user_text()
    calls = []
    for position, tool in enumerate(tools):
        digest = _digest(chat.model, prompt, variant, tool.name, str(position))
        arguments = generate(tool.parameters, int.from_bytes(digest[:8], "big"), prompt)
        name, text = tool.name, orjson.dumps(arguments).decode()
        if position == 0 and malform == "tool_name":
            name = unknown_name(tool.name, {t.name for t in chat.tools})
        elif position == 0 and malform is not None:
            text = broken_document(malform, tool.parameters, arguments)
        calls.append(ToolCall(f"call_{digest[8:20].hex()}", name, text))
    return tuple(calls)


def _called(messages: tuple[Message, ...], call_id: str | None) -> str:
    for message in messages:
        for call in message.tool_calls:
            if call.id == call_id:
                return call.name
    return "the tool"


def tool_result_answer(chat: ChatRequest) -> str | None:
    """After a tool result as the last turn: a text answer that uses it; else None."""
    last = chat.messages[-1]
    if last.role != "tool":
        return None
    results = []
    for message in reversed(chat.messages):
        if message.role != "tool":
            break
        result = " ".join(message.text.split())
        if len(result) > _TOOL_RESULT_CHARS:
            result = result[:_TOOL_RESULT_CHARS] + "..."
        results.append(f"{_called(chat.messages, message.tool_call_id)} returned {result}")
    return "Based on the tool results: " + "; ".join(reversed(results)) + "."

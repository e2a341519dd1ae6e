"""A chat-completions request as the simulator understands it, after validation.

These are plain frozen values: `parsing.py` builds them from the JSON body, and the answer
modules (`choices.py`, `tools.py`, `json_gen.py`) read them. Nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

# What an image part adds to the prompt's token count: OpenAI's flat price for a low-detail
# image. The simulator never looks at the image, so it charges every image the same.
IMAGE_TOKENS = 85
# The most choices one request may ask for (`n`); more is a 400.
MAX_CHOICES = 8


class BadRequest(ValueError):
    """The request body is malformed; the message names the problem and `param` the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class ToolCall:
    """One function call, in an assistant turn of the request or in an answer."""

    id: str
    name: str
    # JSON text, as OpenAI sends it; a malformed call may carry text that is not JSON.
    arguments: str


@dataclass(frozen=True)
class Message:
    role: str
    # The text parts joined; "" for an assistant turn that only calls tools.
    text: str
    images: int = 0
    tool_calls: tuple[ToolCall, ...] = ()
    # Set on `tool` turns: the call whose result this is.
    tool_call_id: str | None = None


@dataclass(frozen=True)
class Tool:
    """A function the model may call; `parameters` is its JSON schema (an object schema)."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    strict: bool = False


@dataclass(frozen=True)
class ToolChoice:
    """`none`, `auto`, `required`, or `function` with the tool's name."""

    mode: str = "auto"
    function: str | None = None


@dataclass(frozen=True)
class ResponseFormat:
    """`text`, `json_object`, or `json_schema` with the schema's name, body and strictness."""

    kind: str = "text"
    name: str = ""
    schema: Mapping[str, Any] | None = None
    strict: bool = False

    @property
    def wants_json(self) -> bool:
        return self.kind != "text"


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    max_tokens: int | None
    temperature: float | None
    stream: bool
    # OpenAI `logprobs: true`: each answer token comes with its log probability ...
    logprobs: bool = False
    # ... and this many likeliest alternatives (0..20).
    top_logprobs: int = 0
    # `stream_options.include_usage`: a last chunk with empty choices and the usage.
    include_usage: bool = False
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = ToolChoice("none")
    parallel_tool_calls: bool = True
    response_format: ResponseFormat = ResponseFormat()
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text
        return ""

    def tool_named(self, name: str) -> Tool | None:
        return next((tool for tool in self.tools if tool.name == name), None)

    def prompt_texts(self) -> Iterator[str]:
        """The texts the prompt's token count covers: every turn (with its tool calls), and
        the tool definitions as one more turn when there are any."""
        for message in self.messages:
            calls = "".join(f"{call.name}{call.arguments}" for call in message.tool_calls)
            yield message.text + calls
        if self.tools:
            yield orjson.dumps(
                [
                    {"name": t.name, "description": t.description, "parameters": t.parameters}
                    for t in self.tools
                ]
            ).decode()

    def image_count(self) -> int:
        return sum(message.images for message in self.messages)

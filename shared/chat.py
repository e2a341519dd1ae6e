"""Domain types for chat requests, free of protobuf and gRPC."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class Finish(StrEnum):
    """Why generation stopped, in the OpenAI wire names."""

    STOP = "stop"
    LENGTH = "length"
    CONTENT_FILTER = "content_filter"
    TOOL_CALLS = "tool_calls"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, raw: str | None) -> Finish:
        try:
            return cls(raw or "unknown")
        except ValueError:
            return cls.UNKNOWN


@dataclass(frozen=True)
class ImagePart:
    """An image in a turn's content: a URL or a `data:` URL, passed to the provider untouched."""

    url: str
    detail: str = ""


# A part of a turn's content: its text, or an image.
ContentPart = str | ImagePart


@dataclass(frozen=True)
class ToolCall:
    """One function call a model made; `arguments` is JSON text as the model wrote it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Turn:
    """One chat message."""

    role: Role
    # The text; for a turn with parts, the text parts joined.
    content: str
    name: str = ""
    # The content as ordered parts, when it holds an image; empty for a text turn.
    parts: tuple[ContentPart, ...] = ()
    # Assistant turns: the calls the model made. Tool turns: the call this one answers.
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    refusal: str = ""

    @property
    def has_image(self) -> bool:
        return any(isinstance(part, ImagePart) for part in self.parts)


@dataclass(frozen=True)
class ToolFunction:
    """A function the model may call; parameters_json is its JSON Schema as text."""

    name: str
    description: str = ""
    parameters_json: str = ""
    strict: bool = False


class ToolChoiceMode(StrEnum):
    AUTO = "auto"
    NONE = "none"
    REQUIRED = "required"
    # The call must be of ToolSet.function_name.
    FUNCTION = "function"


@dataclass(frozen=True)
class ToolSet:
    """The tools a request offers and how the model may use them."""

    functions: tuple[ToolFunction, ...] = ()
    choice: ToolChoiceMode = ToolChoiceMode.AUTO
    function_name: str = ""
    # None: the provider's default (parallel calls allowed).
    parallel_tool_calls: bool | None = None

    @property
    def offered(self) -> bool:
        return bool(self.functions)

    def function(self, name: str) -> ToolFunction | None:
        return next((f for f in self.functions if f.name == name), None)


NO_TOOLS = ToolSet()


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters; None means "use the default"."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None
    # Choices to generate.
    n: int = 1
    # The caller wants the answer's token logprobs (and top alternatives) returned.
    logprobs: bool = False
    top_logprobs: int = 0
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    # Anthropic's top_k; only tiers whose API takes it may be asked (catalogue `top_k: true`).
    top_k: int | None = None


class FormatKind(StrEnum):
    TEXT = "text"
    JSON_OBJECT = "json_object"
    JSON_SCHEMA = "json_schema"


@dataclass(frozen=True)
class ResponseFormat:
    """The shape an answer must take; json_schema is the schema as JSON text."""

    kind: FormatKind = FormatKind.TEXT
    json_schema: str = ""
    # For JSON_SCHEMA: the schema's name and OpenAI's strict mode, passed to the provider.
    schema_name: str = ""
    strict: bool = False

    @property
    def wants_json(self) -> bool:
        return self.kind is not FormatKind.TEXT


TEXT_FORMAT = ResponseFormat()


@dataclass(frozen=True)
class TopLogprob:
    token: str
    logprob: float
    token_bytes: bytes | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """One answer token with its natural-log probability and, if asked, the likeliest others."""

    token: str
    logprob: float
    token_bytes: bytes | None = None
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class Choice:
    """One choice of an answer."""

    index: int
    content: str
    finish: Finish
    tool_calls: tuple[ToolCall, ...] = ()
    refusal: str = ""
    logprobs: tuple[TokenLogprob, ...] = ()
    # The stop sequence that ended the choice, when the provider said which.
    stop_sequence: str = ""


def last_user_text(turns: tuple[Turn, ...] | list[Turn]) -> str:
    """The content of the last user turn, or "" when there is none."""
    for turn in reversed(turns):
        if turn.role is Role.USER:
            return turn.content
    return ""


@dataclass(frozen=True)
class ToolCallDelta:
    """A fragment of one streamed tool call: the first carries id and name, later ones add
    arguments text."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class ChoiceDelta:
    """A streamed piece of one choice."""

    index: int = 0
    content: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    refusal: str = ""
    logprobs: tuple[TokenLogprob, ...] = ()

    @property
    def text_only(self) -> bool:
        """Plain text of the first choice, which older readers take as a bare string."""
        return self.index == 0 and not (self.tool_calls or self.refusal or self.logprobs)

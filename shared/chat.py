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
class Turn:
    """One chat message."""

    role: Role
    content: str
    name: str = ""


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters; None means "use the default"."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int = 0
    stop: tuple[str, ...] = field(default_factory=tuple)


class FormatKind(StrEnum):
    TEXT = "text"
    JSON_OBJECT = "json_object"
    JSON_SCHEMA = "json_schema"


@dataclass(frozen=True)
class ResponseFormat:
    """The shape an answer must take; json_schema is the schema as JSON text."""

    kind: FormatKind = FormatKind.TEXT
    json_schema: str = ""

    @property
    def wants_json(self) -> bool:
        return self.kind is not FormatKind.TEXT


TEXT_FORMAT = ResponseFormat()


def last_user_text(turns: tuple[Turn, ...] | list[Turn]) -> str:
    """The content of the last user turn, or "" when there is none."""
    for turn in reversed(turns):
        if turn.role is Role.USER:
            return turn.content
    return ""

"""Batch API jobs: their states, the JSONL lines sent to the provider, and reading its results.

State machine (every state is written to the store before the step it announces is taken, so a
crash at any point resumes from the last written state without losing or repeating work):

    PENDING ──▶ UPLOADING ──▶ UPLOADED ──▶ CREATING ──▶ SUBMITTED ──▶ COMPLETED
       │            │             │            │            │  ╲
       └────────────┴─────────────┴────────────┴──▶ CANCELLED   ╲──▶ CANCELLING ──▶ CANCELLED
                                                      FAILED ◀── (any non-terminal state)

- PENDING: accepted and durable (Submit returns only after this is committed); nothing sent.
- UPLOADING: an upload of the JSONL file may have been sent. On resume the provider's file list
  is searched for the job's file name (`sluice-<job id>.jsonl`) before uploading again.
- UPLOADED: the file id is stored.
- CREATING: a batch create may have been sent. On resume the provider's batch list is searched
  for the job id in the batch's metadata (`sluice_job_id`) before creating again, so the
  provider never runs the job twice.
- SUBMITTED: the provider batch id is stored; the job is polled until the provider finishes it.
- CANCELLING: a cancel was sent to the provider; polled until the provider confirms.
- COMPLETED / FAILED / CANCELLED: terminal. Results are written in the same transaction as the
  terminal state, so a finished job always has one result per item.

A cancel before the provider batch exists ends the job at once: an uploaded file holds no work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

from shared.chat import NO_TOOLS, TEXT_FORMAT, Finish, ResponseFormat, Sampling, ToolSet, Turn
from shared.openai_chat import chat_body
from shared.pricing import TokenUsage

CHAT_URL = "/v1/chat/completions"
MAX_ITEMS = 50_000
MAX_CUSTOM_ID = 64


class JobState(StrEnum):
    PENDING = "pending"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    CREATING = "creating"
    SUBMITTED = "submitted"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def at_provider(self) -> bool:
        """True once the provider batch id is known."""
        return self in (JobState.SUBMITTED, JobState.CANCELLING)


_TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
_END = frozenset({JobState.FAILED, JobState.CANCELLED})
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.UPLOADING}) | _END,
    JobState.UPLOADING: frozenset({JobState.UPLOADED}) | _END,
    JobState.UPLOADED: frozenset({JobState.CREATING}) | _END,
    JobState.CREATING: frozenset({JobState.SUBMITTED}) | _END,
    JobState.SUBMITTED: frozenset({JobState.CANCELLING, JobState.COMPLETED}) | _END,
    JobState.CANCELLING: frozenset({JobState.COMPLETED}) | _END,
}


class IllegalTransition(RuntimeError):
    """A state change the machine does not allow: a bug, never a provider's doing."""


def check_transition(current: JobState, target: JobState) -> None:
    if target not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"a job cannot go from {current} to {target}")


class InvalidJob(ValueError):
    """A submitted job is malformed; the message names the item and field."""


@dataclass(frozen=True)
class ItemRequest:
    """One call of a job, as the caller gave it."""

    custom_id: str
    model: str
    turns: tuple[Turn, ...]
    sampling: Sampling = field(default_factory=Sampling)
    response_format: ResponseFormat = TEXT_FORMAT
    tools: ToolSet = NO_TOOLS


@dataclass(frozen=True)
class ItemResult:
    """One item's outcome; exactly one of an answer (finish set) and error."""

    custom_id: str
    content: str = ""
    finish: Finish = Finish.UNKNOWN
    model: str = ""
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost_nano_usd: int = 0
    interactive_cost_nano_usd: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def to_json(self) -> bytes:
        raw = {k: v for k, v in self.__dict__.items() if k != "usage"}
        raw["usage"] = [self.usage.input_tokens, self.usage.output_tokens]
        return orjson.dumps(raw)

    @classmethod
    def from_json(cls, raw: bytes | str) -> ItemResult:
        data = orjson.loads(raw)
        data["usage"] = TokenUsage(*data["usage"])
        data["finish"] = Finish.parse(data["finish"])
        return cls(**data)


@dataclass(frozen=True)
class Job:
    """A job as stored; items and results are loaded with it."""

    job_id: str
    tenant: str
    request_id: str
    model: str
    endpoint: str
    state: JobState
    created_at: float
    file_id: str = ""
    batch_id: str = ""
    error: str = ""
    cancel_requested: bool = False
    custom_ids: tuple[str, ...] = ()
    results: tuple[ItemResult, ...] = field(default=(), repr=False)

    @property
    def filename(self) -> str:
        return f"sluice-{self.job_id}.jsonl"


def validate_items(items: Sequence[ItemRequest]) -> str:
    """The model every item calls; raises InvalidJob naming the first problem."""
    if not items:
        raise InvalidJob("items must hold at least one call")
    if len(items) > MAX_ITEMS:
        raise InvalidJob(f"a job holds at most {MAX_ITEMS} items, not {len(items)}")
    seen: set[str] = set()
    model = items[0].model
    for index, item in enumerate(items):
        where = f"items[{index}]"
        if not item.model or not item.turns:
            raise InvalidJob(f"{where}.call.model and {where}.call.messages are required")
        if item.model != model:
            raise InvalidJob(f"{where} calls {item.model!r}; every item must call {model!r}")
        if len(item.custom_id) > MAX_CUSTOM_ID:
            raise InvalidJob(f"{where}.custom_id is longer than {MAX_CUSTOM_ID} characters")
        if item.custom_id in seen:
            raise InvalidJob(f"{where}.custom_id {item.custom_id!r} is used twice")
        seen.add(item.custom_id)
    return model


def item_body(item: ItemRequest) -> dict[str, Any]:
    """The OpenAI chat-completions body of an item."""
    return chat_body(item.model, item.turns, item.sampling, item.response_format, item.tools)


def request_line(item: ItemRequest) -> str:
    """One line of the batch input file, in OpenAI's Batch API format."""
    line = {"custom_id": item.custom_id, "method": "POST", "url": CHAT_URL, "body": item_body(item)}
    return orjson.dumps(line).decode()


# Prices a usage of a model in a region, at the batch price (True) or the interactive one.
Price = Callable[[str, str, TokenUsage, bool], int]


@dataclass(frozen=True)
class _Line:
    custom_id: str
    status: int
    body: Any
    error: str


def _read_line(raw: bytes) -> _Line:
    data = orjson.loads(raw)
    if not isinstance(data, dict) or not isinstance(data.get("custom_id"), str):
        raise ValueError("not an object with a custom_id")
    response = data.get("response") or {}
    error = data.get("error") or {}
    status = int(response.get("status_code", 0)) if isinstance(response, dict) else 0
    body = response.get("body") if isinstance(response, dict) else None
    message = error.get("message", "") if isinstance(error, dict) else str(error)
    return _Line(data["custom_id"], status, body, str(message))


def parse_output(files: Sequence[bytes]) -> tuple[dict[str, _Line], list[str]]:
    """The lines of the provider's output and error files by custom_id, and a description of
    every line that could not be read (kept, so the affected items can say why)."""
    lines: dict[str, _Line] = {}
    unreadable: list[str] = []
    for content in files:
        for number, raw in enumerate(content.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                line = _read_line(raw)
            except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as error:
                unreadable.append(f"line {number}: {error}")
                continue
            lines.setdefault(line.custom_id, line)
    return lines, unreadable


def _answer(custom_id: str, body: Any, region: str, price: Price) -> ItemResult:
    choice = body["choices"][0]
    usage_raw = body.get("usage") or {}
    usage = TokenUsage(
        int(usage_raw.get("prompt_tokens", 0)), int(usage_raw.get("completion_tokens", 0))
    )
    model = str(body.get("model", ""))
    reported = usage_raw.get("cost")
    # A provider-reported cost (USD, as OpenRouter and the simulator send it) wins.
    cost = (
        int(Decimal(str(reported)) * 1_000_000_000)
        if isinstance(reported, int | float)
        else price(model, region, usage, True)
    )
    return ItemResult(
        custom_id=custom_id,
        content=str(choice["message"].get("content") or ""),
        finish=Finish.parse(choice.get("finish_reason")),
        model=model,
        usage=usage,
        cost_nano_usd=cost,
        interactive_cost_nano_usd=price(model, region, usage, False),
    )


def _result(
    custom_id: str, line: _Line | None, unreadable: list[str], region: str, price: Price
) -> ItemResult:
    if line is None:
        why = "the provider returned no result for this item"
        if unreadable:
            why += f"; {len(unreadable)} line(s) of its output could not be read ({unreadable[0]})"
        return ItemResult(custom_id, error=why)
    if line.status != 200 or line.error:
        message = line.error
        if not message and isinstance(line.body, dict):
            message = str((line.body.get("error") or {}).get("message", ""))
        return ItemResult(custom_id, error=f"the provider answered {line.status}: {message}")
    try:
        return _answer(custom_id, line.body, region, price)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
        return ItemResult(custom_id, error=f"the provider's answer is malformed: {error!r}")


def results_for(
    custom_ids: Sequence[str], files: Sequence[bytes], region: str, price: Price, missing: str = ""
) -> tuple[ItemResult, ...]:
    """One result per item, in submission order; missing replaces the default error for items
    the provider never answered (e.g. "cancelled before the provider ran it")."""
    lines, unreadable = parse_output(files)
    results = []
    for custom_id in custom_ids:
        line = lines.get(custom_id)
        if line is None and missing and not unreadable:
            results.append(ItemResult(custom_id, error=missing))
        else:
            results.append(_result(custom_id, line, unreadable, region, price))
    return tuple(results)

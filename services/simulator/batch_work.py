"""The simulated Batch API's files, batches and the work a batch does when it runs.

Batches live per region, like a provider account per region. A batch is `in_progress` from its
creation until `completion_delay_s` has passed; the first read after that runs it (`finalizing`,
then `completed`), so nothing runs in the background and every line is answered exactly once.
Each line is answered as the chat endpoint would answer it (rules, packed prompts, synthetic
prose, replay), at the catalogue's batch price, reported as `usage.cost` in USD.

A request whose last user message contains `[sim:batch-bad-line]` gets a malformed output line
(cut in half), to test how a client copes with bad JSONL from the provider.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.simulator.composer import Composed, prompt_tokens, whole_logprobs
from services.simulator.parsing import parse_chat_request
from services.simulator.request import BadRequest, ChatRequest
from services.simulator.wire import Reply, completion_body, error_body
from shared.pricing import PriceCatalogue, TokenUsage
from shared.tokens import TokenCounter

CHAT_URL = "/v1/chat/completions"
BAD_LINE_MARKER = "[sim:batch-bad-line]"
# Answers a chat request; None when a replayed model has no recording for it.
Compose = Callable[[ChatRequest], Composed | None]
Serves = Callable[[str], bool]


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass
class StoredBatch:
    id: str
    input_file_id: str
    created_at: int
    due_at: float
    metadata: dict[str, str]
    status: str = "in_progress"
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    finished_at: int | None = None

    def as_json(self) -> dict[str, Any]:
        finished = {"completed": "completed_at", "cancelled": "cancelled_at", "failed": "failed_at"}
        stamps: dict[str, int | None] = {name: None for name in finished.values()}
        if self.status in finished:
            stamps[finished[self.status]] = self.finished_at
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": CHAT_URL,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "request_counts": {
                "total": self.total,
                "completed": self.completed,
                "failed": self.failed,
            },
            "metadata": self.metadata,
            **stamps,
        }


@dataclass
class BatchStats:
    """What the simulated Batch API has done, for tests to count."""

    files_uploaded: int = 0
    batches_created: int = 0
    batches_completed: int = 0
    batches_cancelled: int = 0
    # Lines run (each exactly once per batch), and how many of them failed.
    requests_answered: int = 0
    requests_failed: int = 0

    def as_json(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class RegionBatches:
    """One region's files and batches."""

    files: dict[str, StoredFile] = field(default_factory=dict)
    batches: dict[str, StoredBatch] = field(default_factory=dict)


def new_id(prefix: str) -> str:
    return f"{prefix}-sim-{uuid.uuid4().hex[:24]}"


def now_s() -> int:
    return int(time.time())


def validate_input(content: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The input file's lines, and the errors that make the batch fail validation."""
    lines: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(content.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return [], [{"code": "invalid_json_line", "line": number, "message": "not JSON"}]
        custom_id = line.get("custom_id") if isinstance(line, dict) else None
        if not isinstance(custom_id, str) or not custom_id:
            message = "each line must be an object with a non-empty string custom_id"
            return [], [{"code": "invalid_request", "line": number, "message": message}]
        problem = _line_problem(line, custom_id, seen)
        if problem:
            return [], [{"code": "invalid_request", "line": number, "message": problem}]
        seen.add(custom_id)
        lines.append(line)
    if not lines:
        return [], [{"code": "empty_file", "line": None, "message": "the input file has no lines"}]
    return lines, []


def _line_problem(line: dict[str, Any], custom_id: str, seen: set[str]) -> str:
    if custom_id in seen:
        return f"custom_id {custom_id!r} is used twice"
    if line.get("url") != CHAT_URL or line.get("method") != "POST":
        return f"every line must be a POST to {CHAT_URL}"
    if not isinstance(line.get("body"), dict):
        return "body must be an object"
    return ""


class BatchRunner:
    """Answers a batch's lines; pure computation, run off the event loop."""

    def __init__(
        self,
        compose: Compose,
        serves: Serves,
        tokens: TokenCounter,
        catalogue: PriceCatalogue,
    ) -> None:
        self._compose = compose
        self._serves = serves
        self._tokens = tokens
        self._catalogue = catalogue

    def run(self, region: str, lines: list[dict[str, Any]]) -> tuple[bytes, bytes, int]:
        """(output file, error file, failed count) for the input lines."""
        output: list[bytes] = []
        errors: list[bytes] = []
        for line in lines:
            status, body, bad = self._answer_line(region, line["body"])
            record = orjson.dumps(
                {
                    "id": new_id("batch_req"),
                    "custom_id": line["custom_id"],
                    "response": {"status_code": status, "request_id": new_id("req"), "body": body},
                    "error": None,
                }
            )
            if bad:
                record = record[: len(record) // 2]
            (output if status == 200 else errors).append(record)
        return (
            b"\n".join(output) + b"\n",
            b"\n".join(errors) + b"\n" if errors else b"",
            len(errors),
        )

    def _answer_line(self, region: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], bool]:
        try:
            chat = parse_chat_request(orjson.dumps(body))
        except BadRequest as error:
            return 400, error_body(str(error), "invalid_request", param=error.param), False
        if chat.stream:
            return 400, error_body("'stream' is not supported in a batch", "invalid_request"), False
        if not self._serves(chat.model):
            message = f"the model {chat.model!r} does not exist"
            return 404, error_body(message, "model_not_found"), False
        composed = self._compose(chat)
        if composed is None:
            return (
                404,
                error_body("no recorded answer for this prompt", "no_recorded_answer"),
                False,
            )
        recorded_usd = composed.cost_usd
        usage = TokenUsage(prompt_tokens(self._tokens, chat), composed.completion_tokens)
        reply = Reply(
            completion_id=new_id("chatcmpl"),
            created=now_s(),
            model=chat.model,
            usage=usage,
            cost_usd=self._batch_cost_usd(chat.model, region, usage, recorded_usd),
        )
        bad = BAD_LINE_MARKER in chat.last_user_text()
        logprobs = whole_logprobs(chat, composed)
        return 200, completion_body(reply, composed.choices, logprobs), bad

    def _batch_cost_usd(
        self, model: str, region: str, usage: TokenUsage, recorded_usd: float | None
    ) -> float | None:
        """The catalogue price with the model's batch discount; a recorded (replay) cost gets
        the same discount."""
        if not self._catalogue.knows(model):
            return None
        price = self._catalogue.price(model, region)
        if recorded_usd is not None:
            return float(recorded_usd * float(1 - price.batch_discount))
        return price.cost_nano_usd(usage, batch=True) / 1e9

"""The persisted form of a cache entry, and its encoding for the entry stores.

Every store (SQLite, Redis, memory) keeps the same fields: keys, tenant, the query text the
answer was for, the answer with its usage, creation and expiry times (wall-clock seconds, so
they keep their meaning across restarts and between replicas), tags, and the embedding as a
float32 little-endian blob. Vectors are stored so that a restart rebuilds the index without
re-embedding anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from shared.chat import Choice, Finish, TokenLogprob, ToolCall, TopLogprob
from shared.pricing import TokenUsage

# Bytes a stored entry costs beyond its texts and vector: ids, times, usage and row overhead.
# Only the order of magnitude matters, for the byte bound; it is not a measured heap size.
ENTRY_OVERHEAD_BYTES = 256


@dataclass(frozen=True)
class CachedAnswer:
    """An accepted answer and what producing it took."""

    content: str
    model: str
    usage: TokenUsage = field(default_factory=TokenUsage)
    finish: Finish = Finish.STOP
    # Every choice (tool calls, refusals, logprobs); empty for an answer that is its text.
    choices: tuple[Choice, ...] = ()


@dataclass(frozen=True)
class EntryRecord:
    """One entry as the entry store keeps it."""

    entry_id: str
    tenant_id: str
    exact_key: str
    namespace: str
    # The last user turn the answer was for; None for requests without a user turn, which
    # are cached by exact key only and have no vector.
    query: str | None
    answer: CachedAnswer
    created_at: float
    expires_at: float
    tags: tuple[str, ...] = ()
    vector: NDArray[np.float32] | None = None

    @property
    def nbytes(self) -> int:
        """Approximate payload size, the unit of SLUICE_CACHE_MAX_BYTES."""
        return record_bytes(self)


@dataclass(frozen=True)
class BadRecord:
    """A stored entry that cannot be loaded; the cache skips it, logs it and counts it."""

    entry_id: str
    tenant_id: str
    namespace: str
    reason: str


def record_bytes(record: EntryRecord) -> int:
    texts = (
        record.answer.content,
        record.answer.model,
        record.query or "",
        record.exact_key,
        record.namespace,
        record.tenant_id,
        *record.tags,
    )
    vector = 0 if record.vector is None else int(record.vector.nbytes)
    return ENTRY_OVERHEAD_BYTES + vector + sum(len(text.encode("utf-8")) for text in texts)


def meta_of(record: EntryRecord) -> dict[str, Any]:
    """Every field but the vector, as JSON-ready values."""
    usage = record.answer.usage
    return {
        "entry_id": record.entry_id,
        "tenant_id": record.tenant_id,
        "exact_key": record.exact_key,
        "namespace": record.namespace,
        "query": record.query,
        "content": record.answer.content,
        "model": record.answer.model,
        "usage": [usage.input_tokens, usage.output_tokens, usage.cached_input_tokens],
        "finish": record.answer.finish.value,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "tags": list(record.tags),
        **({"choices": choices_json(record.answer.choices)} if record.answer.choices else {}),
    }


def choices_json(choices: tuple[Choice, ...]) -> list[dict[str, Any]]:
    return [
        {
            "index": c.index,
            "content": c.content,
            "finish": c.finish.value,
            "tool_calls": [[t.id, t.name, t.arguments] for t in c.tool_calls],
            "refusal": c.refusal,
            "logprobs": [
                [e.token, e.logprob, [[t.token, t.logprob] for t in e.top]] for e in c.logprobs
            ],
            **({"stop_sequence": c.stop_sequence} if c.stop_sequence else {}),
        }
        for c in choices
    ]


def choices_from_json(raw: list[dict[str, Any]]) -> tuple[Choice, ...]:
    return tuple(
        Choice(
            index=int(c["index"]),
            content=str(c["content"]),
            finish=Finish.parse(c["finish"]),
            tool_calls=tuple(ToolCall(*map(str, t)) for t in c["tool_calls"]),
            refusal=str(c["refusal"]),
            stop_sequence=str(c.get("stop_sequence", "")),
            logprobs=tuple(
                TokenLogprob(
                    str(token),
                    float(logprob),
                    None,
                    tuple(TopLogprob(str(t), float(v)) for t, v in top),
                )
                for token, logprob, top in c["logprobs"]
            ),
        )
        for c in raw
    )


def encode_meta(record: EntryRecord) -> bytes:
    return orjson.dumps(meta_of(record))


def vector_blob(record: EntryRecord) -> bytes | None:
    if record.vector is None:
        return None
    return np.ascontiguousarray(record.vector, dtype="<f4").tobytes()


def record_from_meta(meta: dict[str, Any], blob: bytes | None, dim: int) -> EntryRecord | BadRecord:
    """Rebuilds a record, or describes why its vector cannot be used."""
    vector = None
    if blob is not None:
        problem = _vector_problem(blob, dim)
        if problem:
            return BadRecord(meta["entry_id"], meta["tenant_id"], meta["namespace"], problem)
        vector = np.frombuffer(blob, dtype="<f4").astype(np.float32)
    inputs, outputs, cached = meta["usage"]
    answer = CachedAnswer(
        content=meta["content"],
        model=meta["model"],
        usage=TokenUsage(int(inputs), int(outputs), int(cached)),
        finish=Finish.parse(meta["finish"]),
        choices=choices_from_json(meta.get("choices") or []),
    )
    return EntryRecord(
        entry_id=meta["entry_id"],
        tenant_id=meta["tenant_id"],
        exact_key=meta["exact_key"],
        namespace=meta["namespace"],
        query=meta["query"],
        answer=answer,
        created_at=float(meta["created_at"]),
        expires_at=float(meta["expires_at"]),
        tags=tuple(meta["tags"]),
        vector=vector,
    )


def shape_problem(record: EntryRecord, dim: int) -> BadRecord | None:
    """A record whose vector is not of the model's dimension, as a BadRecord; else None."""
    vector = record.vector
    if vector is None or vector.shape == (dim,):
        return None
    reason = f"vector has shape {vector.shape}, expected ({dim},)"
    return BadRecord(record.entry_id, record.tenant_id, record.namespace, reason)


def order_key(record: EntryRecord) -> tuple[float, str]:
    """Which of two records of one exact key wins: the later created, ties by id."""
    return (record.created_at, record.entry_id)


def _vector_problem(blob: bytes, dim: int) -> str:
    if len(blob) != 4 * dim:
        return f"vector has {len(blob)} bytes, expected {4 * dim} (dimension {dim})"
    if not np.isfinite(np.frombuffer(blob, dtype="<f4")).all():
        return "vector holds NaN or infinite values"
    return ""

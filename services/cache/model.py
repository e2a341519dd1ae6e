"""The cache's request and result types, free of protobuf and gRPC."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from services.cache.adaptive import IndexPolicy
from services.cache.keys import CHARACTER_BOUND, RequestKeys, request_keys
from services.cache.records import CachedAnswer
from services.cache.window import QueryWindow
from shared.chat import NO_TOOLS, TEXT_FORMAT, ResponseFormat, Sampling, ToolSet, Turn
from shared.errors import InvalidRequest

MAX_TAGS = 16
MAX_TAG_CHARS = 128


@dataclass(frozen=True)
class CachePolicy:
    min_similarity: float
    ttl_s: float
    # Bounds over all namespaces and tenants together.
    max_entries: int
    max_bytes: int = 1 << 30
    index: IndexPolicy = field(default_factory=IndexPolicy)


class QueryEmbedder(Protocol):
    """What the cache needs from the embedding side; EmbeddingBatcher provides it."""

    @property
    def dim(self) -> int: ...

    @property
    def ready(self) -> bool: ...

    async def embed(self, text: str) -> NDArray[np.float32]: ...


class HitKind(StrEnum):
    MISS = "miss"
    EXACT = "exact"
    SEMANTIC = "semantic"


@dataclass(frozen=True)
class CacheRequest:
    """A request as the cache sees it."""

    tenant_id: str
    model_class: str
    turns: tuple[Turn, ...]
    sampling: Sampling = field(default_factory=Sampling)
    # False limits a lookup to exact matches.
    allow_semantic: bool = True
    response_format: ResponseFormat = TEXT_FORMAT
    # Lookups only: entries created longer ago than this many seconds do not match.
    max_age_s: float | None = None
    tools: ToolSet = NO_TOOLS
    # Lookups only: the tenant's bound on the share of wrong semantic hits, in (0, 1); None
    # serves on the verifier's own bar (see calibration.ErrorBound).
    max_wrong_rate: float | None = None


@dataclass(frozen=True)
class RejectedCandidate:
    """On a miss, the most similar entry whose score fell short of the bar (no check vetoed
    it), for a shadow check."""

    entry_id: str
    content: str
    similarity: float  # cosine in [0, 1] to the request


@dataclass(frozen=True)
class LookupResult:
    kind: HitKind
    answer: CachedAnswer | None = None
    # Cosine similarity in [0, 1] of the matched entry; 1 for exact hits, 0 for misses.
    similarity: float = 0.0
    entry_id: str = ""
    # The request's namespace key, hit or miss.
    namespace: str = ""
    # Candidates above the threshold that verification turned down during this lookup.
    rejected: int = 0
    # Misses only: the most similar of those that fell short of the bar rather than being
    # vetoed by a check; None on hits and when there is none.
    nearest_rejected: RejectedCandidate | None = None

    @property
    def hit(self) -> bool:
        return self.kind is not HitKind.MISS


@dataclass(frozen=True)
class StoredEntry:
    entry_id: str
    namespace: str


@dataclass(frozen=True)
class ExactTarget:
    """The entry stored for exactly this request (tenant_id is taken from the invalidation)."""

    request: CacheRequest


@dataclass(frozen=True)
class NamespaceTarget:
    namespace_key: str


@dataclass(frozen=True)
class TenantTarget:
    """Every entry of the tenant."""


@dataclass(frozen=True)
class TagTarget:
    tag: str


InvalidateTarget = ExactTarget | NamespaceTarget | TenantTarget | TagTarget


def validate_max_age(max_age_s: float | None) -> None:
    if max_age_s is not None and not (max_age_s > 0 and math.isfinite(max_age_s)):
        raise InvalidRequest(f"max_age must be positive, got {max_age_s}s")


def validate_max_wrong_rate(rate: float | None) -> None:
    if rate is not None and not (0.0 < rate < 1.0):
        raise InvalidRequest(f"max_wrong_rate must be in (0, 1) (0 or unset: none), got {rate}")


def validate_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """Checks the tags of a Store and drops repeats, keeping their order."""
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(f"tags: at most {MAX_TAGS} tags per entry, got {len(tags)}")
    for index, tag in enumerate(tags):
        validate_tag(tag, f"tags[{index}]")
    return tuple(dict.fromkeys(tags))


def validate_tag(tag: str, field_name: str = "tag") -> None:
    if not tag.strip() or len(tag) > MAX_TAG_CHARS:
        raise InvalidRequest(
            f"{field_name} must hold 1 to {MAX_TAG_CHARS} characters, not only spaces"
        )


def keys_of(request: CacheRequest, window: QueryWindow = CHARACTER_BOUND) -> RequestKeys:
    """The request's keys, after the checks every RPC shares; `window` is what the embedding
    model reads of a text."""
    if not request.tenant_id:
        raise InvalidRequest("context.tenant_id is required")
    if not request.turns:
        raise InvalidRequest("messages must not be empty")
    return request_keys(
        request.tenant_id,
        request.model_class,
        request.turns,
        request.sampling,
        request.response_format,
        request.tools,
        window,
    )

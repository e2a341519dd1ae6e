"""Domain types of the request path, free of protobuf and gRPC."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from grpc import StatusCode

from services.router.gates import LogprobSummary
from services.router.policy import ModelClass, TenantPolicy
from shared.chat import (
    NO_TOOLS,
    TEXT_FORMAT,
    Choice,
    ChoiceDelta,
    Finish,
    ResponseFormat,
    Sampling,
    ToolCall,
    ToolSet,
    Turn,
)
from shared.errors import SluiceError
from shared.pricing import TokenUsage


class CacheMode(StrEnum):
    ENABLED = "enabled"
    EXACT_ONLY = "exact_only"
    BYPASS = "bypass"


class StageName(StrEnum):
    CACHE = "cache"
    COMPRESSOR = "compressor"
    BATCHER = "batcher"
    TIER = "tier"
    # The cheap-LLM judge's call about one tier's answer.
    JUDGE = "judge"


class Outcome(StrEnum):
    USED = "used"
    PASSED = "passed"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    NOT_APPLICABLE = "not_applicable"


class StageUnavailable(Exception):
    """An optional stage's service could not be reached; the router goes on without it."""

    def __init__(self, stage: StageName, reason: str) -> None:
        super().__init__(f"{stage} unavailable: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass(frozen=True)
class ShadowDecision:
    """What a shadow (candidate) policy would have decided for a request."""

    policy_version: str
    # Models of the candidate's cascade for this request, cheapest first; empty when the
    # candidate does not know the tenant or the model class.
    tiers: tuple[str, ...]
    differs: bool
    note: str = ""


@dataclass(frozen=True)
class ChatRequest:
    tenant: TenantPolicy
    request_id: str
    model_class: ModelClass
    turns: tuple[Turn, ...]
    sampling: Sampling
    cache_mode: CacheMode
    max_cost_nano_usd: int = 0
    policy_version: str = ""
    # Set when the tenant's budget is spent and its policy downgrades instead of rejecting.
    downgrade_reason: str = ""
    shadow: ShadowDecision | None = None
    response_format: ResponseFormat = TEXT_FORMAT
    # The prompt's tokens as admission counted them (cl100k, with chat framing), so no later
    # stage counts the same text again; 0 for a request built without admission.
    prompt_tokens: int = 0
    # The tools the model may call; a tier's calls must fit them (tool_gate.py).
    tools: ToolSet = NO_TOOLS
    # The caller's end user (OpenAI `user`), passed to the provider.
    end_user: str = ""
    # The caller's own tags (OpenAI `metadata`), recorded with the request, never sent upstream.
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TierAnswer:
    """One tier's answer and how it travelled."""

    content: str
    finish: Finish
    model: str
    region: str
    usage: TokenUsage
    cost_nano_usd: int
    latency_s: float
    # How the batcher handled the call: USED (joined a shared call), PASSED, or SKIPPED.
    batcher_outcome: Outcome = Outcome.PASSED
    batcher_detail: str = ""
    # The answer's token logprobs, when the call asked for them and the provider sent them.
    logprobs: LogprobSummary | None = None
    # Every choice (tool calls, refusals, token logprobs); choice 0 repeats content and finish.
    # Empty when the answer is its text alone.
    choices: tuple[Choice, ...] = ()

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return self.choices[0].tool_calls if self.choices else ()


@dataclass(frozen=True)
class CachedAnswer:
    kind: str  # "exact" or "semantic"
    content: str
    model: str
    usage: TokenUsage
    similarity: float
    finish: Finish
    # The cache's id of the entry served; ReportHit names the entry by it.
    entry_id: str = ""
    choices: tuple[Choice, ...] = ()
    # How long the entry had left to live when the cache answered; 0 when it did not say.
    expires_in_s: float = 0.0
    # True when the router answered from its own copy (exact_local.py), without a hop.
    local: bool = False


@dataclass(frozen=True)
class StoredEntry:
    """What the cache said of an answer it stored: the entry's id and how long it lives."""

    entry_id: str
    expires_in_s: float
    # The answer as the cache will serve it for an exact hit (through the same conversions).
    answer: CachedAnswer


@dataclass(frozen=True)
class RejectedCandidate:
    """On a miss, the stored entry closest to the request whose score fell short of the cache's
    bar (no check vetoed it). A shadow check compares its answer with the fresh one, so the
    namespace's threshold learns below its bar as well as above it."""

    entry_id: str
    content: str
    similarity: float


@dataclass(frozen=True)
class CacheLookup:
    hit: CachedAnswer | None = None
    nearest_rejected: RejectedCandidate | None = None


@dataclass(frozen=True)
class Compression:
    turns: tuple[Turn, ...]
    compressed: bool
    original_tokens: int
    compressed_tokens: int
    strategy: str
    reason: str
    cost_nano_usd: int


@dataclass(frozen=True)
class StageLine:
    """One row of the per-stage cost table."""

    stage: StageName
    outcome: Outcome
    detail: str = ""
    tier: int = 0
    model: str = ""
    region: str = ""
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost_nano_usd: int = 0
    latency_s: float = 0.0


@dataclass(frozen=True)
class TierDelta:
    """A streamed piece of one cascade attempt: `text` is plain text of the first choice;
    `piece`, when set, is a piece that is more than that (tool-call fragments, a refusal,
    logprobs, another choice), with its text in piece.content."""

    attempt: int
    tier: int
    text: str
    piece: ChoiceDelta | None = None


@dataclass(frozen=True)
class RouteResult:
    request_id: str
    content: str
    finish: Finish
    model: str
    tier: int
    region: str
    usage: TokenUsage
    lines: tuple[StageLine, ...]
    baseline_model: str
    baseline_cost_nano_usd: int
    cache_hit: bool
    policy_version: str
    # Every choice of the answer; choice 0 repeats content and finish. Empty when the answer
    # is its text alone (one choice, no tool calls, refusal or logprobs).
    choices: tuple[Choice, ...] = ()

    def all_choices(self) -> tuple[Choice, ...]:
        """The choices, with a text-only answer as its one choice."""
        return self.choices or (Choice(0, self.content, self.finish),)

    @property
    def total_cost_nano_usd(self) -> int:
        return sum(line.cost_nano_usd for line in self.lines)

    @property
    def cost_avoided_nano_usd(self) -> int:
        return self.baseline_cost_nano_usd - self.total_cost_nano_usd


class DispatcherDown(SluiceError):
    """The dispatcher itself is unreachable, so no tier can be called (UNAVAILABLE)."""

    code = StatusCode.UNAVAILABLE

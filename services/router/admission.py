"""Admission: authenticate the caller and validate the request before any work is done."""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import ParamSpec, TypeVar

from services.router.admission_checks import (
    NAME_PATTERN,
    FieldError,
    bad,
    check_schema_text,
    validate_caller_tags,
    validate_choices,
    validate_images,
    validate_tool_turns,
    validate_tools,
    validate_top_k,
)
from services.router.budgets import BudgetLedger, check_budget
from services.router.exact_local import copy_key
from services.router.model import CacheMode, ChatRequest, ShadowDecision
from services.router.policy import ModelClass, Policy
from services.router.rollout import PolicySelector
from shared.chat import (
    NO_TOOLS,
    TEXT_FORMAT,
    FormatKind,
    ResponseFormat,
    Role,
    Sampling,
    ToolSet,
    Turn,
)
from shared.errors import InvalidRequest, SluiceError, quoted
from shared.pricing import PriceCatalogue
from shared.tokens import TokenCounter

MAX_STOP_SEQUENCES = 4
# SamplingParams.max_tokens is an int32 on the wire to every later hop.
MAX_INT32 = 2**31 - 1
# A request id is echoed in answers, logs and spans; a caller's own id is bounded.
MAX_REQUEST_ID_CHARS = 128
# Requests with more prompt text than this are validated and counted on a worker thread:
# counting 10 MB takes about a second, which would stall every other call on the router's
# event loop. Smaller ones stay inline, where the thread hop would cost more than the work.
OFFLOAD_CHARS = 64 * 1024
# Characters that show nothing: format characters (zero-width space/joiners, U+2060, BOM),
# separators and controls. A prompt made only of these is empty.
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Zs", "Zl", "Zp"})

P = ParamSpec("P")
T = TypeVar("T")


async def off_loop(size: int, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """work(*args, **kwargs), on a worker thread when `size` (characters or bytes of the
    input it walks) is over OFFLOAD_CHARS, inline otherwise."""
    if size <= OFFLOAD_CHARS:
        return work(*args, **kwargs)
    return await asyncio.to_thread(work, *args, **kwargs)


def is_blank(text: str) -> bool:
    """True when the text shows nothing: whitespace, zero-width or other invisible characters."""
    return not any(unicodedata.category(c) not in _INVISIBLE_CATEGORIES for c in text.strip())


def api_key_from_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """Reads `x-api-key`, or `authorization: Bearer <key>`."""
    for key, value in metadata:
        text = value if isinstance(value, str) else value.decode(errors="replace")
        if key == "x-api-key":
            return text.strip()
        if key == "authorization" and text.lower().startswith("bearer "):
            return text[7:].strip()
    return ""


def validate_sampling(sampling: Sampling) -> None:
    if sampling.temperature is not None and not (
        math.isfinite(sampling.temperature) and 0 <= sampling.temperature <= 2
    ):
        raise FieldError(
            "temperature", f"sampling.temperature={sampling.temperature} must be within [0, 2]"
        )
    if sampling.top_p is not None and not (0 < sampling.top_p <= 1):
        raise FieldError("top_p", f"sampling.top_p={sampling.top_p} must be within (0, 1]")
    if not 0 <= sampling.max_tokens <= MAX_INT32:
        raise FieldError(
            "max_tokens",
            f"sampling.max_tokens={sampling.max_tokens} must be within [0, {MAX_INT32}]",
        )
    if len(sampling.stop) > MAX_STOP_SEQUENCES:
        raise FieldError("stop", f"sampling.stop has {len(sampling.stop)} entries; at most 4")
    if not all(sampling.stop):
        # Providers refuse an empty stop sequence; refused here, it is the caller's 400.
        raise FieldError("stop", "sampling.stop has an empty entry; each must be non-empty")
    validate_choices(sampling)


def validate_turns(turns: tuple[Turn, ...]) -> None:
    """A conversation that ends with the user's message or a tool's result, with tool calls
    and tool results that fit together."""
    if not turns:
        raise bad("messages", "is empty; send at least one user message")
    last, at = turns[-1], f"messages[{len(turns) - 1}]"
    if last.role not in (Role.USER, Role.TOOL):
        raise FieldError(
            at,
            f"{at}: the last message must come from the user (or be a tool's result), "
            f"not {last.role}",
        )
    if last.role is Role.USER and not last.has_image and is_blank(last.content):
        raise bad(f"{at}.content", "is empty (or only invisible characters)")
    validate_tool_turns(turns)


def shadow_decision(
    candidate: Policy, api_key: str, model_class: str, serving: ModelClass
) -> ShadowDecision:
    """The candidate policy's cascade for this request, compared with the one serving it."""
    served = tuple(t.model for t in serving.tiers)
    try:
        chosen = candidate.authenticate(api_key).model_class(model_class)
    except SluiceError as error:
        return ShadowDecision(candidate.version, (), True, f"candidate refuses: {error}")
    tiers = tuple(t.model for t in chosen.tiers)
    return ShadowDecision(candidate.version, tiers, tiers != served)


def validate_response_format(response_format: ResponseFormat) -> None:
    if response_format.kind is not FormatKind.JSON_SCHEMA:
        return
    check_schema_text("response_format.json_schema", response_format.json_schema)
    name = response_format.schema_name
    if name and not NAME_PATTERN.match(name):
        raise bad(
            "response_format.json_schema.name", f"{quoted(name)} must match {NAME_PATTERN.pattern}"
        )


def validate_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise FieldError(
            "context.request_id",
            f"context.request_id has {len(request_id)} characters; at most {MAX_REQUEST_ID_CHARS}",
        )


def _prompt_texts(asked: Asked) -> Iterator[str]:
    """The text a provider bills as prompt: every turn with its tool calls, and the tools."""
    for turn in asked.turns:
        yield turn.content + "".join(call.name + call.arguments for call in turn.tool_calls)
    for function in asked.tools.functions:
        yield function.name + function.description + function.parameters_json


@dataclass(frozen=True)
class Asked:
    """A chat request as the caller sent it, before admission."""

    model_class: str
    turns: tuple[Turn, ...]
    sampling: Sampling = field(default_factory=Sampling)
    request_id: str = ""
    # None: the tenant policy's default.
    cache_mode: CacheMode | None = None
    max_cost_nano_usd: int = 0
    response_format: ResponseFormat = TEXT_FORMAT
    tools: ToolSet = NO_TOOLS
    end_user: str = ""
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Draft:
    """A request read under the policy serving its caller, not yet validated: Admission's
    admit_repeat or admit_draft turn it into an admitted request, and nothing else may use it.
    It depends on nothing but the caller's key and what was asked (the policy is fixed for the
    process's life; the request id and the budget are settled at admission), so the same
    request may be admitted from one draft again (known_drafts.py)."""

    asked: Asked
    # Validated fields only once admitted; the request id is the caller's or empty,
    # prompt_tokens is 0 and the budget unchecked.
    request: ChatRequest

    @cached_property
    def copy_key(self) -> str:
        """The key of a router copy of its answer (exact_local.py), computed once."""
        return copy_key(self.request)


def _size(asked: Asked) -> int:
    """The characters of prompt and schema text admission walks: over OFFLOAD_CHARS, the walk
    runs on a worker thread."""
    size = sum(len(turn.content) for turn in asked.turns) + len(asked.response_format.json_schema)
    return size + sum(len(f.parameters_json) + len(f.description) for f in asked.tools.functions)


def _check_cost_cap(asked: Asked) -> None:
    if asked.max_cost_nano_usd < 0:
        raise bad("context.max_cost_nano_usd", "must not be negative")


class Admission:
    def __init__(
        self,
        policies: PolicySelector | Policy,
        tokens: TokenCounter,
        max_prompt_tokens: int,
        ledger: BudgetLedger | None = None,
        catalogue: PriceCatalogue | None = None,
    ) -> None:
        self._policies = (
            policies if isinstance(policies, PolicySelector) else PolicySelector(policies)
        )
        self._tokens = tokens
        self._max_prompt_tokens = max_prompt_tokens
        self._ledger = ledger
        # Which models take image parts; without a catalogue, none is known to.
        self._accepts_images = catalogue.accepts_images if catalogue else lambda _model: False
        self._accepts_top_k = catalogue.accepts_top_k if catalogue else lambda _model: False

    def admit(self, api_key: str, asked: Asked) -> ChatRequest:
        """Returns the validated request, or raises Unauthenticated / InvalidRequest /
        BudgetExhausted."""
        draft = self.draft(api_key, asked)
        return self._settle(draft.request, self._check(draft))

    async def admit_async(self, api_key: str, asked: Asked) -> ChatRequest:
        """admit() for the front doors, which share one event loop: a large prompt is read,
        validated and counted on a worker thread; the budget check stays on the loop."""
        return await self.admit_draft(await self.draft_async(api_key, asked))

    async def draft_async(self, api_key: str, asked: Asked) -> Draft:
        """draft() for the event loop, on a worker thread for a large prompt."""
        return await off_loop(_size(asked), self.draft, api_key, asked)

    async def admit_draft(self, draft: Draft) -> ChatRequest:
        """The full admission of a drafted request (admit_async after the draft)."""
        prompt_tokens = await off_loop(_size(draft.asked), self._check, draft)
        return self._settle(draft.request, prompt_tokens)

    def draft(self, api_key: str, asked: Asked) -> Draft:
        """The caller authenticated and the request read under the policy serving it, its
        defaults filled in: enough to find a router copy of its answer (exact_local.py), and
        not yet validated."""
        selection = self._policies.select(
            lambda: [
                hashlib.sha256(api_key.encode()).hexdigest(),
                asked.model_class,
                *(t.content for t in asked.turns),
            ]
        )
        tenant = selection.serving.authenticate(api_key)
        try:
            chosen_class = tenant.model_class(asked.model_class)
        except InvalidRequest as error:
            raise FieldError("model", str(error)) from None
        sampling = asked.sampling
        if sampling.temperature is None:
            sampling = replace(sampling, temperature=chosen_class.default_temperature)
        shadow = (
            None
            if selection.shadow is None
            else shadow_decision(selection.shadow, api_key, asked.model_class, chosen_class)
        )
        request = ChatRequest(
            tenant=tenant,
            request_id=asked.request_id,
            model_class=chosen_class,
            turns=asked.turns,
            sampling=sampling,
            cache_mode=asked.cache_mode or CacheMode.ENABLED,
            max_cost_nano_usd=asked.max_cost_nano_usd or tenant.max_cost_nano_usd,
            policy_version=selection.serving.version,
            shadow=shadow,
            response_format=asked.response_format,
            tools=asked.tools,
            end_user=asked.end_user,
            metadata=asked.metadata,
        )
        return Draft(asked, request)

    def admit_repeat(self, draft: Draft, prompt_tokens: int) -> ChatRequest:
        """A drafted request that a router copy answers: the copy was kept for a request with
        the same key, admitted in full under the same policy, and the key covers every field
        the other checks read (exact_local.py), so only the rest is checked here."""
        asked = draft.asked
        validate_request_id(asked.request_id)
        validate_caller_tags(asked.end_user, asked.metadata)
        _check_cost_cap(asked)
        return self._settle(draft.request, prompt_tokens)

    def _check(self, draft: Draft) -> int:
        """Validation, then the prompt's token count: everything but the budget, and nothing
        that touches state shared with the event loop."""
        asked, chosen_class = draft.asked, draft.request.model_class
        validate_request_id(asked.request_id)
        validate_turns(asked.turns)
        validate_sampling(asked.sampling)
        validate_response_format(asked.response_format)
        validate_tools(asked.tools)
        validate_caller_tags(asked.end_user, asked.metadata)
        validate_images(asked.turns, chosen_class, self._accepts_images)
        validate_top_k(asked.sampling, chosen_class, self._accepts_top_k)
        _check_cost_cap(asked)
        prompt_tokens = self._tokens.count_chat(_prompt_texts(asked))
        if prompt_tokens > self._max_prompt_tokens:
            raise InvalidRequest(
                f"request too large: the prompt has {prompt_tokens} tokens, "
                f"over the limit of {self._max_prompt_tokens}; shorten the messages"
            )
        return prompt_tokens

    def _settle(self, request: ChatRequest, prompt_tokens: int) -> ChatRequest:
        """The admitted request, with the tenant's budget checked on the caller's thread (the
        ledger is the loop's)."""
        tenant, chosen_class = request.tenant, request.model_class
        downgrade = "" if self._ledger is None else check_budget(tenant, self._ledger) or ""
        if downgrade:
            chosen_class = replace(chosen_class, tiers=chosen_class.tiers[:1])
        return replace(
            request,
            # 32 random hex digits, as uuid4().hex gave, without building a UUID per request.
            request_id=request.request_id or secrets.token_hex(16),
            model_class=chosen_class,
            downgrade_reason=downgrade,
            prompt_tokens=prompt_tokens,
        )

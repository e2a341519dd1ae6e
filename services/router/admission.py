"""Admission: authenticate the caller and validate the request before any work is done."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Iterable
from dataclasses import replace

import jsonschema

from services.router.budgets import BudgetLedger, check_budget
from services.router.model import CacheMode, ChatRequest, ShadowDecision
from services.router.policy import ModelClass, Policy
from services.router.rollout import PolicySelector
from shared.chat import TEXT_FORMAT, FormatKind, ResponseFormat, Role, Sampling, Turn
from shared.errors import InvalidRequest, SluiceError
from shared.tokens import TokenCounter

MAX_STOP_SEQUENCES = 4


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
        raise InvalidRequest(f"sampling.temperature={sampling.temperature} must be within [0, 2]")
    if sampling.top_p is not None and not (0 < sampling.top_p <= 1):
        raise InvalidRequest(f"sampling.top_p={sampling.top_p} must be within (0, 1]")
    if sampling.max_tokens < 0:
        raise InvalidRequest(f"sampling.max_tokens={sampling.max_tokens} must not be negative")
    if len(sampling.stop) > MAX_STOP_SEQUENCES:
        raise InvalidRequest(f"sampling.stop has {len(sampling.stop)} entries; at most 4")


def validate_turns(turns: tuple[Turn, ...]) -> None:
    if not turns:
        raise InvalidRequest("messages is empty; send at least one user message")
    if turns[-1].role is not Role.USER:
        raise InvalidRequest(f"the last message must come from the user, not {turns[-1].role}")
    if not turns[-1].content.strip():
        raise InvalidRequest(f"messages[{len(turns) - 1}].content is empty")


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
    try:
        schema = json.loads(response_format.json_schema)
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except json.JSONDecodeError as error:
        raise InvalidRequest(f"response_format.json_schema is not JSON: {error.msg}") from None
    except jsonschema.exceptions.SchemaError as error:
        raise InvalidRequest(
            f"response_format.json_schema is not a valid schema: {error.message}"
        ) from None


class Admission:
    def __init__(
        self,
        policies: PolicySelector | Policy,
        tokens: TokenCounter,
        max_prompt_tokens: int,
        ledger: BudgetLedger | None = None,
    ) -> None:
        self._policies = (
            policies if isinstance(policies, PolicySelector) else PolicySelector(policies)
        )
        self._tokens = tokens
        self._max_prompt_tokens = max_prompt_tokens
        self._ledger = ledger

    def admit(
        self,
        api_key: str,
        *,
        request_id: str,
        model_class: str,
        turns: tuple[Turn, ...],
        sampling: Sampling,
        cache_mode: CacheMode | None,
        max_cost_nano_usd: int,
        response_format: ResponseFormat = TEXT_FORMAT,
    ) -> ChatRequest:
        """Returns the validated request, or raises Unauthenticated / InvalidRequest /
        BudgetExhausted."""
        selection = self._policies.select(
            [hashlib.sha256(api_key.encode()).hexdigest(), model_class, *(t.content for t in turns)]
        )
        tenant = selection.serving.authenticate(api_key)
        chosen_class = tenant.model_class(model_class)
        validate_turns(turns)
        validate_sampling(sampling)
        validate_response_format(response_format)
        if max_cost_nano_usd < 0:
            raise InvalidRequest("context.max_cost_nano_usd must not be negative")
        prompt_tokens = self._tokens.count_chat(t.content for t in turns)
        if prompt_tokens > self._max_prompt_tokens:
            raise InvalidRequest(
                f"request too large: the prompt has {prompt_tokens} tokens, "
                f"over the limit of {self._max_prompt_tokens}"
            )
        if sampling.temperature is None:
            sampling = replace(sampling, temperature=chosen_class.default_temperature)
        shadow = (
            None
            if selection.shadow is None
            else shadow_decision(selection.shadow, api_key, model_class, chosen_class)
        )
        downgrade = "" if self._ledger is None else check_budget(tenant, self._ledger) or ""
        if downgrade:
            chosen_class = replace(chosen_class, tiers=chosen_class.tiers[:1])
        return ChatRequest(
            tenant=tenant,
            request_id=request_id or uuid.uuid4().hex,
            model_class=chosen_class,
            turns=turns,
            sampling=sampling,
            cache_mode=cache_mode or CacheMode.ENABLED,
            max_cost_nano_usd=max_cost_nano_usd or tenant.max_cost_nano_usd,
            policy_version=selection.serving.version,
            downgrade_reason=downgrade,
            shadow=shadow,
            response_format=response_format,
            prompt_tokens=prompt_tokens,
        )

"""A unary request end to end (answering.py): a repeat is answered from the router's copy with
only what its key does not cover checked, and never for another caller or a refused one."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import pytest

from services.router.admission import Admission, Asked
from services.router.answering import answer_unary
from services.router.budgets import InMemoryLedger
from services.router.cache_audit import CacheAudit
from services.router.cache_stage import CacheStage
from services.router.cascade import Cascade
from services.router.exact_local import ExactCopies, LocalBounds
from services.router.model import CacheLookup, ChatRequest, RouteResult, StageName, TierAnswer
from services.router.pipeline import Pipeline
from services.router.policy import Policy, parse_policy
from shared.chat import Role, Turn
from shared.errors import BudgetExhausted, InvalidRequest, Unauthenticated
from shared.tokens import TokenCounter
from tests.unit.router.fakes import FakeCompressor, FakeModels, answer
from tests.unit.router.fixtures import catalogue, policy_doc
from tests.unit.router.test_cache_stage import TRACER
from tests.unit.router.test_exact_feed import CountingCache

QUESTION = "What is the capital of France?"


class CountingTokens(TokenCounter):
    """Counts the prompts counted."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts = 0

    def count_chat(self, contents: Iterable[str]) -> int:
        self.prompts += 1
        return super().count_chat(contents)


class Rig:
    """Admission and a pipeline whose cache stage keeps copies, over a counting cache."""

    def __init__(self, policy: Policy | None = None, first: TierAnswer | None = None) -> None:
        self.cache = CountingCache()
        self.tokens = CountingTokens()
        self.ledger = InMemoryLedger()
        self.copies = ExactCopies(LocalBounds(feed_stale_s=1e9))
        self.copies.fresh(time.monotonic())
        cascade = Cascade(FakeModels({"cheap": first or answer("Paris.", "cheap")}), TRACER)
        stage = CacheStage(self.cache, CacheAudit(self.cache, cascade, TRACER), copies=self.copies)
        self.pipeline = Pipeline(
            self.cache,
            FakeCompressor(),
            cascade,
            catalogue(),
            self.tokens,
            self.ledger,
            cache_stage=stage,
        )
        policy = policy or parse_policy(policy_doc(), catalogue())
        self.admission = Admission(policy, self.tokens, 10_000, self.ledger)

    async def ask(self, key: str = "acme-key", **fields: Any) -> tuple[ChatRequest, RouteResult]:
        asked = Asked(model_class="chat", turns=(Turn(Role.USER, QUESTION),))
        draft = await self.admission.draft_async(key, replace(asked, **fields))
        chat, result = await answer_unary(
            self.admission, self.pipeline, draft, time.monotonic() + 5
        )
        await self.pipeline.drain()  # the store, and the copy it keeps
        return chat, result


def cache_line(result: RouteResult) -> str:
    return next(line.detail for line in result.lines if line.stage is StageName.CACHE)


async def test_a_repeat_is_answered_from_the_copy_without_a_hop_or_a_token_count() -> None:
    rig = Rig()
    first_chat, first = await rig.ask()
    assert not first.cache_hit and rig.cache.lookups == 1 and rig.tokens.prompts == 1
    chat, repeat = await rig.ask()
    assert repeat.cache_hit and cache_line(repeat) == "exact hit (router copy)"
    assert (rig.cache.lookups, rig.tokens.prompts) == (1, 1)
    # The copy carries the prompt's count, so the saving is priced as for the first request.
    assert chat.prompt_tokens == first_chat.prompt_tokens > 0
    assert repeat.baseline_cost_nano_usd == first.baseline_cost_nano_usd
    assert chat.request_id != first_chat.request_id


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"request_id": "r" * 129}, "context.request_id"),
        ({"end_user": "u" * 257}, "user"),
        ({"max_cost_nano_usd": -1}, "context.max_cost_nano_usd"),
    ],
)
async def test_a_repeat_still_has_the_fields_its_key_leaves_out_checked(
    fields: dict[str, Any], param: str
) -> None:
    rig = Rig()
    await rig.ask()
    with pytest.raises(InvalidRequest) as refused:
        await rig.ask(**fields)
    assert getattr(refused.value, "param", None) == param


async def test_a_copy_serves_neither_another_tenant_nor_an_unknown_key() -> None:
    rig = Rig()
    await rig.ask()
    with pytest.raises(Unauthenticated):
        await rig.ask("stolen-key")
    _, other = await rig.ask("other-key")
    assert not other.cache_hit and rig.cache.lookups == 2


async def test_a_tenant_whose_budget_is_spent_gets_no_repeat() -> None:
    doc = copy.deepcopy(policy_doc())
    doc["tenants"]["acme"]["budget"] = {"daily_usd": 1}
    rig = Rig(parse_policy(doc, catalogue()))
    await rig.ask()
    rig.ledger.record("acme", 1_000_000_000)
    with pytest.raises(BudgetExhausted):
        await rig.ask()


async def test_an_answer_the_first_tier_would_refuse_is_not_kept_as_a_copy() -> None:
    # The top tier's answer, which the first tier's refusal gate turns down: a copy of it
    # would fail that gate on every repeat, so only the cache keeps it.
    rig = Rig()
    request = rig.admission.admit("acme-key", Asked("chat", (Turn(Role.USER, QUESTION),)))
    refusal = answer("I'm sorry, but I can't help with that.", "top")
    rig.pipeline.cache.after(request, CacheLookup(), refusal)
    await rig.pipeline.drain()
    assert rig.cache.stored == [refusal] and len(rig.copies) == 0


async def test_one_draft_admitted_twice_gets_a_request_id_each_time() -> None:
    # The front door keeps drafts of bodies it has read (known_drafts.py).
    rig = Rig()
    draft = await rig.admission.draft_async(
        "acme-key", Asked(model_class="chat", turns=(Turn(Role.USER, QUESTION),))
    )
    first = await answer_unary(rig.admission, rig.pipeline, draft, time.monotonic() + 5)
    await rig.pipeline.drain()
    second = await answer_unary(rig.admission, rig.pipeline, draft, time.monotonic() + 5)
    assert second[1].cache_hit and first[0].request_id != second[0].request_id

"""The packer: one packed upstream call for a group, exact cost shares, and a fallback to
individual calls whenever the packed reply cannot be split safely."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence

import orjson
import pytest

from services.batcher.flush_policy import FlushPolicy
from services.batcher.packer import ModelAnswer, PackableCall, Packer, PackKey
from services.batcher.packing import REQUESTS_MARKER
from shared.chat import Finish, Turn
from shared.pricing import TokenUsage

SYSTEM = "You classify support tickets. " * 40
KEY = PackKey("tenant", "model-x", SYSTEM, b"template")


class Words:
    """A token counter that counts words: enough to check proportions."""

    def count(self, text: str) -> int:
        return len(text.split())


def answer(
    content: str, *, finish: Finish = Finish.STOP, inputs: int = 0, cost: int = 0
) -> ModelAnswer:
    return ModelAnswer(content, finish, "model-x", "us-east", "sim", TokenUsage(inputs, 10), cost)


def follow(turns: tuple[Turn, ...], mangle: Callable[[list[dict[str, str]]], str] | None) -> str:
    """Answers a packed prompt like an obedient model: "answer to <request>" per id."""
    listing = orjson.loads(turns[1].content.split(f"\n{REQUESTS_MARKER}\n", 1)[1])
    elements = [{"id": e["id"], "answer": f"answer to {e['request']}"} for e in listing]
    return mangle(elements) if mangle else orjson.dumps(elements).decode()


class Upstream:
    """Records packed and individual calls; the packed reply can be mangled."""

    def __init__(self, mangle: Callable[[list[dict[str, str]]], str] | None = None) -> None:
        self.mangle = mangle
        self.packed: list[tuple[tuple[Turn, ...], int, float]] = []
        self.alone: list[str] = []
        self.fail_packed = False

    async def send(
        self,
        key: PackKey,
        turns: tuple[Turn, ...],
        max_tokens: int,
        timeout_s: float,
        traces: Sequence[object],
    ) -> ModelAnswer:
        self.packed.append((turns, max_tokens, timeout_s))
        if self.fail_packed:
            raise RuntimeError("upstream 500")
        return answer(follow(turns, self.mangle), inputs=1000, cost=9000)

    def call(self, request: str, deadline: float = math.inf, max_tokens: int = 20) -> PackableCall:
        async def alone() -> ModelAnswer:
            self.alone.append(request)
            return answer(f"alone: {request}", inputs=600, cost=700)

        return PackableCall(KEY, request, max_tokens, deadline, alone)


def packer(
    upstream: Upstream, window_s: float = 0.05, max_items: int = 16, reserve_s: float = 1.0
) -> Packer:
    return Packer(FlushPolicy(window_s, max_items, reserve_s), upstream.send, Words())


async def run_all(p: Packer, calls: list[PackableCall]):
    return await asyncio.gather(*(p.execute(c) for c in calls))


async def test_calls_within_the_window_share_one_packed_call():
    upstream = Upstream()
    outcomes = await run_all(packer(upstream), [upstream.call(f"ticket {n}") for n in range(4)])
    assert len(upstream.packed) == 1 and upstream.alone == []
    turns, max_tokens, _ = upstream.packed[0]
    assert turns[0].content == SYSTEM
    assert max_tokens == 4 * 20 + 4 * 16 + 8
    assert [o.answer.content for o in outcomes] == [f"answer to ticket {n}" for n in range(4)]
    assert {o.packed_size for o in outcomes} == {4}
    # The shares add up to the packed call's bill exactly.
    assert sum(o.answer.cost_nano_usd for o in outcomes) == 9000
    assert sum(o.answer.usage.input_tokens for o in outcomes) == 1000
    assert sum(o.answer.usage.output_tokens for o in outcomes) == 10
    alone_inputs = 4 * (len(SYSTEM.split()) + 2 + 10)
    assert sum(o.input_tokens_saved for o in outcomes) == alone_inputs - 1000


@pytest.mark.parametrize(
    "mangle",
    [
        lambda elements: "Sure! Here are the answers.",
        lambda elements: orjson.dumps([*elements, {"id": "99", "answer": "x"}]).decode(),
        lambda elements: orjson.dumps(elements[:1] * 2 + elements[1:]).decode(),
    ],
    ids=["not-json", "extra-id", "duplicate-id"],
)
async def test_a_reply_that_cannot_be_trusted_sends_every_call_alone(mangle):
    upstream = Upstream(mangle)
    outcomes = await run_all(packer(upstream), [upstream.call(f"ticket {n}") for n in range(3)])
    assert sorted(upstream.alone) == [f"ticket {n}" for n in range(3)]
    assert [o.answer.content for o in outcomes] == [f"alone: ticket {n}" for n in range(3)]
    assert all(o.fallback_reason for o in outcomes)
    # Each pays its own call plus its share of the wasted packed call.
    assert sum(o.answer.cost_nano_usd for o in outcomes) == 3 * 700 + 9000
    assert sum(o.answer.usage.input_tokens for o in outcomes) == 3 * 600 + 1000
    assert sum(o.input_tokens_saved for o in outcomes) == -1000


async def test_mixed_failure_uses_the_answers_present_and_sends_the_missing_alone():
    upstream = Upstream(lambda elements: orjson.dumps([elements[0], elements[2]]).decode())
    outcomes = await run_all(packer(upstream), [upstream.call(f"ticket {n}") for n in range(3)])
    assert upstream.alone == ["ticket 1"]
    assert [o.answer.content for o in outcomes] == [
        "answer to ticket 0",
        "alone: ticket 1",
        "answer to ticket 2",
    ]
    assert [bool(o.fallback_reason) for o in outcomes] == [False, True, False]
    assert outcomes[1].input_tokens_saved < 0


async def test_a_failed_packed_call_sends_every_call_alone():
    upstream = Upstream()
    upstream.fail_packed = True
    outcomes = await run_all(packer(upstream), [upstream.call("a"), upstream.call("b")])
    assert sorted(upstream.alone) == ["a", "b"]
    assert all("upstream 500" in o.fallback_reason for o in outcomes)


async def test_a_cut_reply_is_not_trusted():
    upstream = Upstream()

    async def cut(key, turns, max_tokens, timeout_s, traces) -> ModelAnswer:
        return answer(follow(turns, None), finish=Finish.LENGTH)

    p = Packer(FlushPolicy(0.05, 16, 1.0), cut, Words())
    outcomes = await run_all(p, [upstream.call("a"), upstream.call("b")])
    assert sorted(upstream.alone) == ["a", "b"]
    assert all("cut short" in o.fallback_reason for o in outcomes)


async def test_a_deadline_shorter_than_the_window_is_sent_at_once_and_alone():
    upstream = Upstream()
    p = packer(upstream, window_s=5.0, reserve_s=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcome = await p.execute(upstream.call("urgent", deadline=loop.time() + 0.5))
    assert loop.time() - started < 1.0, "it did not wait for the 5 s window"
    assert outcome.answer.content == "alone: urgent" and outcome.packed_size == 0
    assert upstream.packed == []


async def test_an_urgent_call_flushes_the_group_it_joins():
    upstream = Upstream()
    p = packer(upstream, window_s=5.0, reserve_s=1.0)
    loop = asyncio.get_running_loop()
    relaxed = asyncio.ensure_future(p.execute(upstream.call("relaxed")))
    await asyncio.sleep(0.01)
    urgent = await asyncio.wait_for(p.execute(upstream.call("urgent", loop.time() + 0.9)), 2)
    assert (await relaxed).packed_size == urgent.packed_size == 2
    assert upstream.packed[0][2] <= 0.9, "the packed call leaves time for a fallback"


async def test_a_full_group_is_sent_without_waiting_for_the_window():
    upstream = Upstream()
    p = packer(upstream, window_s=30.0, max_items=3)
    outcomes = await asyncio.wait_for(run_all(p, [upstream.call(f"t{n}") for n in range(3)]), 2)
    assert {o.packed_size for o in outcomes} == {3}


async def test_a_lone_call_is_sent_with_its_own_prompt():
    upstream = Upstream()
    outcome = await packer(upstream).execute(upstream.call("only me"))
    assert outcome.answer.content == "alone: only me" and upstream.packed == []


async def test_different_keys_are_never_packed_together():
    upstream = Upstream()
    p = packer(upstream)
    other = PackableCall(
        PackKey("other-tenant", "model-x", SYSTEM, b"template"),
        "theirs",
        20,
        math.inf,
        upstream.call("theirs").alone,
    )
    await run_all(p, [upstream.call("mine"), other])
    assert upstream.packed == [] and sorted(upstream.alone) == ["mine", "theirs"]


async def test_a_caller_that_leaves_before_the_flush_is_not_packed():
    upstream = Upstream()
    p = packer(upstream, window_s=0.1)
    leaving = asyncio.ensure_future(p.execute(upstream.call("leaving")))
    staying = [asyncio.ensure_future(p.execute(upstream.call(f"stay {n}"))) for n in range(2)]
    await asyncio.sleep(0.02)
    leaving.cancel()
    outcomes = await asyncio.gather(*staying)
    listing = upstream.packed[0][0][1].content
    assert "leaving" not in listing and {o.packed_size for o in outcomes} == {2}

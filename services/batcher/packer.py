"""Collects packable calls into groups, sends each group as one packed upstream call, and splits
the reply; anything that cannot be split safely is answered by the call's own upstream call.

A group is the calls of one tenant to one model with the same system prompt and the same
sampling and region (the PackKey). Members wait at most the flush window, never past what their
deadlines allow (FlushPolicy). A group of one is simply sent alone, with its own prompt.

Costs stay honest: the packed call's usage and cost are split among its members in proportion
to their share of the text (exactly, so the shares add up to the bill), and a member that falls
back pays its share of the packed call on top of its own call, because that call was paid for.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from services.batcher.flush_policy import FlushPolicy
from services.batcher.packing import PackItem, allocate, pack_turns, split_reply
from shared.chat import Finish, Turn
from shared.pricing import TokenUsage

# OpenAI chat framing: 4 tokens per message plus 2 for the reply primer (shared/tokens.py).
_CHAT_FRAMING_TOKENS = 2 * 4 + 2
# Output tokens a packed reply spends per item on `{"id": "12", "answer": "..."},`.
_JSON_TOKENS_PER_ITEM = 16


class TokenCount(Protocol):
    def count(self, text: str) -> int: ...


@dataclass(frozen=True)
class ModelAnswer:
    """A provider's answer, as the packer needs it (the servicer converts to and from proto)."""

    content: str
    finish: Finish
    model: str
    region: str
    endpoint: str
    usage: TokenUsage
    cost_nano_usd: int
    latency_s: float = 0.0
    attempts: int = 1


@dataclass(frozen=True)
class PackKey:
    """Calls with equal keys may share a packed call."""

    tenant: str
    model: str
    system: str
    # Everything else that must match (sampling, region, tier), as opaque deterministic bytes
    # that the sender turns back into a call.
    template: bytes


# Sends a packed conversation for a key, with a max_tokens (0: provider default), a timeout
# and the members' trace contexts (for the packed call's span to link to).
SendPacked = Callable[
    [PackKey, tuple[Turn, ...], int, float, Sequence[object]], Awaitable[ModelAnswer]
]


@dataclass(frozen=True)
class PackableCall:
    key: PackKey
    # The call's user turn.
    request: str
    max_tokens: int
    # Event-loop time by which the caller needs an answer; math.inf for none.
    deadline: float
    # The call on its own, as it would have been sent without packing.
    alone: Callable[[], Awaitable[ModelAnswer]] = field(compare=False)
    # The caller's trace context, opaque here.
    trace: object = field(default=None, compare=False)


@dataclass(frozen=True)
class PackOutcome:
    answer: ModelAnswer
    # Calls in the packed upstream call; 0 when this call was sent alone.
    packed_size: int = 0
    input_tokens_saved: int = 0
    fallback_reason: str = ""


@dataclass
class _Group:
    key: PackKey
    opened_at: float
    members: list[tuple[PackableCall, asyncio.Future[PackOutcome]]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class Packer:
    """Packs concurrent calls that share a PackKey; one instance per process."""

    def __init__(self, policy: FlushPolicy, send: SendPacked, tokens: TokenCount) -> None:
        self._policy = policy
        self._send = send
        self._tokens = tokens
        self._groups: dict[PackKey, _Group] = {}
        # Strong references to running flushes: the loop keeps only weak ones.
        self._running: set[asyncio.Task[None]] = set()
        self.upstream_calls = 0

    @property
    def enabled(self) -> bool:
        return self._policy.enabled

    async def execute(self, call: PackableCall) -> PackOutcome:
        loop = asyncio.get_running_loop()
        group = self._groups.get(call.key)
        if group is None:
            group = self._groups[call.key] = _Group(call.key, loop.time())
        future: asyncio.Future[PackOutcome] = loop.create_future()
        group.members.append((call, future))
        self._schedule(group, loop)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            self._leave(group, call, future)
            raise

    def _schedule(self, group: _Group, loop: asyncio.AbstractEventLoop) -> None:
        flush_at = self._policy.flush_at(group.opened_at, (c.deadline for c, _ in group.members))
        if self._policy.due(loop.time(), len(group.members), flush_at):
            self._flush(group)
            return
        if group.timer is not None:
            group.timer.cancel()
        group.timer = loop.call_at(flush_at, self._flush, group)

    def _leave(
        self, group: _Group, call: PackableCall, future: asyncio.Future[PackOutcome]
    ) -> None:
        """A caller gave up: drop it if its group has not been sent yet."""
        if self._groups.get(group.key) is group:
            group.members = [(c, f) for c, f in group.members if f is not future]
            if not group.members:
                self._flush(group)
        # Already sent: the outcome (or error) is still delivered, so mark it retrieved.
        future.add_done_callback(lambda done: done.cancelled() or done.exception())

    def _flush(self, group: _Group) -> None:
        if self._groups.get(group.key) is group:
            del self._groups[group.key]
        if group.timer is not None:
            group.timer.cancel()
        if group.members:
            task = asyncio.ensure_future(self._run(group.key, group.members))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(
        self, key: PackKey, members: list[tuple[PackableCall, asyncio.Future[PackOutcome]]]
    ) -> None:
        if len(members) == 1:
            await _settle(members[0][1], self._alone(members[0][0]))
            return
        now = asyncio.get_running_loop().time()
        timeout = self._policy.packed_timeout(now, (c.deadline for c, _ in members))
        if timeout <= 0:
            await asyncio.gather(*(_settle(f, self._alone(c)) for c, f in members))
            return
        items = [PackItem(str(n), call.request) for n, (call, _) in enumerate(members, 1)]
        reason = ""
        try:
            self.upstream_calls += 1
            packed = await self._send(
                key,
                pack_turns(key.system, items),
                self._max_tokens(members),
                timeout,
                [call.trace for call, _ in members],
            )
        except Exception as error:  # any failure of the packed call: every member goes alone
            reason = f"the packed call failed: {error}"
            await asyncio.gather(*(_settle(f, self._alone(c, reason=reason)) for c, f in members))
            return
        await self._deliver(key, members, items, packed)

    async def _deliver(
        self,
        key: PackKey,
        members: list[tuple[PackableCall, asyncio.Future[PackOutcome]]],
        items: list[PackItem],
        packed: ModelAnswer,
    ) -> None:
        split = split_reply(
            packed.content, [item.id for item in items], complete=packed.finish is Finish.STOP
        )
        texts = [split.answers.get(item.id, "") for item in items]
        weights = [
            self._tokens.count(item.request) + self._tokens.count(text) + 1
            for item, text in zip(items, texts, strict=True)
        ]
        inputs = allocate(packed.usage.input_tokens, weights)
        outputs = allocate(packed.usage.output_tokens, weights)
        costs = allocate(packed.cost_nano_usd, weights)
        system_tokens = self._tokens.count(key.system)
        settling = []
        for n, ((call, future), item) in enumerate(zip(members, items, strict=True)):
            alone_tokens = system_tokens + self._tokens.count(call.request) + _CHAT_FRAMING_TOKENS
            if item.id in split.answers:
                usage = TokenUsage(inputs[n], outputs[n])
                answer = dataclasses.replace(
                    packed, content=split.answers[item.id], usage=usage, cost_nano_usd=costs[n]
                )
                if not future.done():
                    future.set_result(PackOutcome(answer, len(members), alone_tokens - inputs[n]))
                continue
            # Its share of the packed call was paid for and saved nothing, so it is billed to
            # this call on top of its own: the members' usage and cost still add up to the bill.
            fallback = self._alone(
                call,
                reason=split.problem,
                share=(TokenUsage(inputs[n], outputs[n]), costs[n]),
                packed_size=len(members),
            )
            settling.append(_settle(future, fallback))
        await asyncio.gather(*settling)

    async def _alone(
        self,
        call: PackableCall,
        *,
        reason: str = "",
        share: tuple[TokenUsage, int] | None = None,
        packed_size: int = 0,
    ) -> PackOutcome:
        self.upstream_calls += 1
        answer = await call.alone()
        if share is None:
            return PackOutcome(answer, packed_size, 0, reason)
        usage, cost = share
        billed = TokenUsage(
            answer.usage.input_tokens + usage.input_tokens,
            answer.usage.output_tokens + usage.output_tokens,
            answer.usage.cached_input_tokens,
        )
        answer = dataclasses.replace(
            answer, usage=billed, cost_nano_usd=answer.cost_nano_usd + cost
        )
        return PackOutcome(answer, packed_size, -usage.input_tokens, reason)

    def _max_tokens(self, members: list[tuple[PackableCall, asyncio.Future[PackOutcome]]]) -> int:
        """Room for every member's answer plus the JSON around them; 0 (the provider's default)
        when any member left its own limit to the default."""
        limits = [call.max_tokens for call, _ in members]
        if not all(limits):
            return 0
        return sum(limits) + _JSON_TOKENS_PER_ITEM * len(limits) + 8


async def _settle(future: asyncio.Future[PackOutcome], outcome: Awaitable[PackOutcome]) -> None:
    """Delivers an outcome or its error to a waiting member."""
    try:
        result = await outcome
    except Exception as error:  # the member's own call failed: the member sees that error
        if not future.done():
            future.set_exception(error)
        return
    if not future.done():
        future.set_result(result)

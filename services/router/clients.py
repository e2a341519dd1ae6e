"""gRPC adapters that implement the router's ports on the other services' stubs.

These translate between the domain and the contracts, apply per-stage timeouts within the
request deadline, and turn "the peer is unreachable" into StageUnavailable (optional stages) or
DispatcherDown, while statuses the peers sent on purpose keep their code and message.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import grpc
from sluice.batcher.v1 import batcher_service_pb2 as batcher_pb
from sluice.batcher.v1 import batcher_service_pb2_grpc as batcher_grpc
from sluice.cache.v1 import cache_service_pb2 as cache_pb
from sluice.cache.v1 import cache_service_pb2_grpc as cache_grpc
from sluice.common.v1 import common_pb2
from sluice.compressor.v1 import compressor_service_pb2 as compressor_pb
from sluice.compressor.v1 import compressor_service_pb2_grpc as compressor_grpc
from sluice.dispatcher.v1 import dispatcher_service_pb2 as dispatcher_pb
from sluice.dispatcher.v1 import dispatcher_service_pb2_grpc as dispatcher_grpc

from services.router.model import (
    CachedAnswer,
    ChatRequest,
    Compression,
    DispatcherDown,
    Outcome,
    StageName,
    StageUnavailable,
    TierAnswer,
)
from services.router.policy import TierSpec
from shared.chat import Turn
from shared.convert import (
    finish_from_proto,
    finish_to_proto,
    response_format_to_proto,
    sampling_to_proto,
    turns_from_proto,
    turns_to_proto,
    usage_from_proto,
    usage_to_proto,
)
from shared.errors import DeadlineExceeded, error_origin, from_status

Clock = Callable[[], float]


def _unreachable(error: grpc.aio.AioRpcError) -> bool:
    """True when the peer never answered (down, refusing connections), as opposed to a status
    it chose to send, which carries Sluice's origin metadata."""
    return error.code() == grpc.StatusCode.UNAVAILABLE and error_origin(error) is None


def _stage_down(stage: StageName, error: grpc.aio.AioRpcError) -> StageUnavailable:
    """An optional stage failed: the request goes on without it, and the line says why."""
    return StageUnavailable(stage, f"{error.code().name}: {error.details()}")


def _timeout(deadline: float, cap: float | None, clock: Clock) -> float:
    remaining = deadline - clock()
    if remaining <= 0:
        raise DeadlineExceeded("the request deadline expired")
    return remaining if cap is None else min(cap, remaining)


def request_context(request: ChatRequest) -> common_pb2.RequestContext:
    return common_pb2.RequestContext(
        tenant_id=request.tenant.tenant_id,
        request_id=request.request_id,
        max_cost_nano_usd=request.max_cost_nano_usd,
    )


class CacheClient:
    def __init__(
        self,
        stub: cache_grpc.SemanticCacheServiceAsyncStub,
        timeout_s: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self._stub = stub
        self._timeout_s = timeout_s
        self._clock = clock

    async def lookup(self, request: ChatRequest, deadline: float) -> CachedAnswer | None:
        lookup = cache_pb.LookupRequest(
            context=request_context(request),
            model_class=request.model_class.name,
            messages=turns_to_proto(request.turns),
            sampling=sampling_to_proto(request.sampling),
            allow_semantic=request.cache_mode.value == "enabled",
            # Part of the keys: a JSON request must never get a free-text answer, nor the reverse.
            response_format=response_format_to_proto(request.response_format),
        )
        try:
            found = await self._stub.Lookup(
                lookup, timeout=_timeout(deadline, self._timeout_s, self._clock)
            )
        except grpc.aio.AioRpcError as error:
            # Any cache failure only costs the chance of a hit; never fail the request for it.
            raise _stage_down(StageName.CACHE, error) from None
        if found.kind not in (cache_pb.HIT_KIND_EXACT, cache_pb.HIT_KIND_SEMANTIC):
            return None
        return CachedAnswer(
            kind="exact" if found.kind == cache_pb.HIT_KIND_EXACT else "semantic",
            content=found.content,
            model=found.model,
            usage=usage_from_proto(found.usage),
            similarity=found.similarity,
            finish=finish_from_proto(found.finish_reason),
        )

    async def store(self, request: ChatRequest, answer: TierAnswer, deadline: float) -> None:
        store = cache_pb.StoreRequest(
            context=request_context(request),
            model_class=request.model_class.name,
            messages=turns_to_proto(request.turns),
            sampling=sampling_to_proto(request.sampling),
            content=answer.content,
            model=answer.model,
            usage=usage_to_proto(answer.usage),
            finish_reason=finish_to_proto(answer.finish),
            response_format=response_format_to_proto(request.response_format),
        )
        try:
            await self._stub.Store(store, timeout=_timeout(deadline, self._timeout_s, self._clock))
        except grpc.aio.AioRpcError as error:
            raise _stage_down(StageName.CACHE, error) from None


class CompressorClient:
    def __init__(
        self,
        stub: compressor_grpc.PromptCompressorServiceAsyncStub,
        timeout_s: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self._stub = stub
        self._timeout_s = timeout_s
        self._clock = clock

    async def compress(
        self, request: ChatRequest, target_model: str, deadline: float
    ) -> Compression:
        compress = compressor_pb.CompressRequest(
            context=request_context(request),
            messages=turns_to_proto(request.turns),
            target_model=target_model,
        )
        try:
            result = await self._stub.Compress(
                compress, timeout=_timeout(deadline, self._timeout_s, self._clock)
            )
        except grpc.aio.AioRpcError as error:
            raise _stage_down(StageName.COMPRESSOR, error) from None
        return Compression(
            turns=turns_from_proto(result.messages) if result.compressed else request.turns,
            compressed=result.compressed,
            original_tokens=result.original_tokens,
            compressed_tokens=result.compressed_tokens,
            strategy=result.strategy,
            reason=result.reason,
            cost_nano_usd=result.cost_nano_usd,
        )


def _tier_answer(
    completion: common_pb2.Completion,
    outcome: Outcome,
    detail: str,
    cost_nano_usd: int | None = None,
) -> TierAnswer:
    return TierAnswer(
        content=completion.content,
        finish=finish_from_proto(completion.finish_reason),
        model=completion.model,
        region=completion.region,
        usage=usage_from_proto(completion.usage),
        cost_nano_usd=completion.cost_nano_usd if cost_nano_usd is None else cost_nano_usd,
        latency_s=completion.upstream_latency.ToNanoseconds() / 1e9,
        batcher_outcome=outcome,
        batcher_detail=detail,
    )


Resolve = Callable[[str, int], Awaitable[list[str]]]


async def resolve_ipv4(host: str, port: int) -> list[str]:
    """The host's IPv4 addresses as host:port, sorted; [] when the name does not resolve."""
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    return sorted({f"{info[4][0]}:{port}" for info in found})


def rendezvous(key: bytes, addresses: Iterable[str]) -> list[str]:
    """Addresses ranked for a key by highest random weight (Thaler & Ravishankar, 1998): every
    router that knows the same addresses ranks them the same, and adding or removing a replica
    only moves the keys whose first choice it is."""
    return sorted(
        addresses,
        key=lambda a: hashlib.blake2b(key, key=a.encode()[:64], digest_size=8).digest(),
        reverse=True,
    )


def batcher_key(request: ChatRequest, call: common_pb2.ModelCall) -> bytes:
    """Identical calls of a tenant get the same key, so they meet in one batcher replica, whose
    singleflight then shares one upstream call among them."""
    digest = hashlib.sha256(request.tenant.tenant_id.encode())
    digest.update(b"\x00")
    digest.update(call.SerializeToString(deterministic=True))
    return digest.digest()


class BatcherReplicas:
    """One channel per batcher replica, and the replicas ranked by a call's hash.

    SLUICE_ROUTER_BATCHER_ADDR is either a comma-separated list of host:port (fixed replicas,
    e.g. on loopback) or one host:port whose name is resolved to every IPv4 address it has (a
    headless Kubernetes Service), again every refresh_s seconds. Until a name first resolves,
    one channel to the name itself is used.
    """

    def __init__(
        self,
        target: str,
        open_channel: Callable[[str], grpc.aio.Channel],
        resolve: Resolve = resolve_ipv4,
        refresh_s: float = 30.0,
    ) -> None:
        entries = [entry.strip() for entry in target.split(",") if entry.strip()]
        host, _, port = entries[0].rpartition(":")
        self._name = (host, int(port)) if len(entries) == 1 and not _is_ip(host) else None
        self._open = open_channel
        self._resolve = resolve
        self._refresh_s = refresh_s
        self._channels = {address: open_channel(address) for address in entries}
        self._stubs = self._stubs_for(self._channels)
        self._refresher: asyncio.Task[None] | None = None

    @staticmethod
    def _stubs_for(
        channels: dict[str, grpc.aio.Channel],
    ) -> dict[str, batcher_grpc.BatcherServiceAsyncStub]:
        return {a: batcher_grpc.BatcherServiceStub(channel) for a, channel in channels.items()}

    def ranked(self, key: bytes) -> list[tuple[str, batcher_grpc.BatcherServiceAsyncStub]]:
        stubs = self._stubs
        return [(address, stubs[address]) for address in rendezvous(key, stubs)]

    async def start(self) -> None:
        if self._name is not None:
            await self.refresh()
            self._refresher = asyncio.ensure_future(self._refresh_forever())

    async def refresh(self) -> None:
        """Re-resolves the name; keeps the current replicas when it resolves to nothing."""
        if self._name is None:
            return
        found = await self._resolve(*self._name)
        if not found or set(found) == set(self._channels):
            return
        current = self._channels
        self._channels = {a: current.get(a) or self._open(a) for a in found}
        self._stubs = self._stubs_for(self._channels)
        for address, channel in current.items():
            if address not in self._channels:
                # In-flight calls on a departed replica get a moment to finish.
                await channel.close(grace=5.0)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            await self.refresh()

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        for channel in self._channels.values():
            await channel.close()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class ModelClient:
    """Calls a tier's model through the batcher, or straight to the dispatcher without it."""

    def __init__(
        self,
        batchers: BatcherReplicas,
        dispatcher: dispatcher_grpc.RegionalDispatcherServiceAsyncStub,
        dispatcher_addr: str,
        clock: Clock = time.monotonic,
    ) -> None:
        self._batchers = batchers
        self._dispatcher = dispatcher
        self._dispatcher_addr = dispatcher_addr
        self._clock = clock

    @staticmethod
    def _model_call(
        request: ChatRequest, tier: TierSpec, turns: tuple[Turn, ...]
    ) -> common_pb2.ModelCall:
        sampling = sampling_to_proto(request.sampling)
        if not sampling.max_tokens:
            sampling.max_tokens = request.model_class.max_tokens
        return common_pb2.ModelCall(
            response_format=response_format_to_proto(request.response_format),
            model=tier.model,
            messages=turns_to_proto(turns),
            sampling=sampling,
            tier=tier.index,
        )

    def _dispatcher_error(self, error: grpc.aio.AioRpcError) -> Exception:
        if _unreachable(error):
            return DispatcherDown(
                f"dispatcher unavailable at {self._dispatcher_addr}: {error.details()}"
            )
        return from_status(error)

    async def call(
        self, request: ChatRequest, tier: TierSpec, turns: tuple[Turn, ...], deadline: float
    ) -> TierAnswer:
        call = self._model_call(request, tier, turns)
        execute = batcher_pb.ExecuteRequest(context=request_context(request), call=call)
        unreachable = []
        # The replica the call hashes to, then the next in its ranking if that one is down.
        for address, batcher in self._batchers.ranked(batcher_key(request, call))[:2]:
            try:
                executed = await batcher.Execute(
                    execute, timeout=_timeout(deadline, None, self._clock)
                )
            except grpc.aio.AioRpcError as error:
                if not _unreachable(error):
                    raise from_status(error) from None
                unreachable.append(f"{address}: {error.details()}")
                continue
            return self._batched(executed)
        skipped = f"batcher unreachable ({'; '.join(unreachable)}); called the dispatcher directly"
        return await self._direct(request, call, deadline, skipped)

    @staticmethod
    def _batched(executed: batcher_pb.ExecuteResponse) -> TierAnswer:
        if executed.shared:
            # This caller joined an identical in-flight call: it pays nothing extra upstream.
            return _tier_answer(
                executed.completion,
                Outcome.USED,
                f"shared an identical in-flight call ({executed.group_size} callers)",
                cost_nano_usd=0,
            )
        return _tier_answer(executed.completion, Outcome.PASSED, "no identical call in flight")

    async def _direct(
        self, request: ChatRequest, call: common_pb2.ModelCall, deadline: float, skipped: str
    ) -> TierAnswer:
        try:
            dispatched = await self._dispatcher.Dispatch(
                dispatcher_pb.DispatchRequest(context=request_context(request), call=call),
                timeout=_timeout(deadline, None, self._clock),
            )
        except grpc.aio.AioRpcError as error:
            raise self._dispatcher_error(error) from None
        return _tier_answer(dispatched.completion, Outcome.SKIPPED, skipped)

    async def stream(
        self, request: ChatRequest, tier: TierSpec, turns: tuple[Turn, ...], deadline: float
    ) -> AsyncIterator[str | TierAnswer]:
        call = self._model_call(request, tier, turns)
        stream = self._dispatcher.DispatchStream(
            dispatcher_pb.DispatchStreamRequest(context=request_context(request), call=call),
            timeout=_timeout(deadline, None, self._clock),
        )
        try:
            async for event in stream:
                if event.HasField("completion"):
                    yield _tier_answer(
                        event.completion,
                        Outcome.NOT_APPLICABLE,
                        "streaming calls go straight to the dispatcher",
                    )
                else:
                    yield event.content_delta
        except grpc.aio.AioRpcError as error:
            raise self._dispatcher_error(error) from None

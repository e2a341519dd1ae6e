"""Batcher replicas, and which one a call goes to: rendezvous hashing on the call."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

import grpc
from sluice.batcher.v1 import batcher_service_pb2_grpc as batcher_grpc
from sluice.common.v1 import common_pb2

from services.router.clients.common import unreachable
from services.router.model import ChatRequest
from shared.errors import from_status

if TYPE_CHECKING:
    # The async stub type exists only in the generated .pyi stubs.
    Stub = batcher_grpc.BatcherServiceAsyncStub

Resolve = Callable[[str, int], Awaitable[list[str]]]
Answer = TypeVar("Answer")


def _never(error: grpc.aio.AioRpcError) -> bool:
    return False


async def ask_in_turn(
    ranked: Iterable[tuple[str, Stub]],
    call: Callable[[Stub], Awaitable[Answer]],
    pass_on: Callable[[grpc.aio.AioRpcError], bool] = _never,
) -> tuple[Answer | None, list[str]]:
    """Calls the replicas in ranking order until one answers. An unreachable replica, or one
    whose status `pass_on` accepts (e.g. NOT_FOUND for a job another replica holds), hands over
    to the next; any other status is raised as the Sluice error it carries. Returns the answer,
    or None with why each unreachable replica was passed over."""
    down: list[str] = []
    for address, stub in ranked:
        try:
            return await call(stub), down
        except grpc.aio.AioRpcError as error:
            if unreachable(error):
                down.append(f"{address}: {error.details()}")
            elif not pass_on(error):
                raise from_status(error) from None
    return None, down


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

"""The error-bound replay of benchmarks/cache_bound.py through the real cache service.

The same streams as cache_bound.replay, over gRPC to `python -m services.cache` (rule checks,
cosine floor FLOOR): each (bound, dataset) is its own tenant, so its namespace learns only from
its own verdicts. Its stored questions go in first, then its held-back probes in order, each
looked up with `max_wrong_rate` set; a served semantic hit chosen by `audited` is reported with
ReportHit (a wrong one removes the entry), and a miss that names a nearest rejected candidate
gets a shadow report of whether that candidate's answer is the probe's. The fixed-threshold
oracle asks a tenant of its own with no bound and never reports, so the cache's rule checks at
its floor pick what a fixed threshold would serve (cache_bound.static_points in-process).
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from asyncio import Semaphore
from dataclasses import dataclass

import grpc
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc
from sluice.common.v1.common_pb2 import RequestContext

from benchmarks.cache_service import MODEL_CLASS, CacheService, Stub, tenant, user_turn
from services.cache.verifiers.replay import Probe, Space

BOUNDS = (0.005, 0.01, 0.02, 0.05)
# The cosine floor below which no candidate is considered (SLUICE_CACHE_MIN_SIMILARITY).
FLOOR = 0.80


@dataclass
class Tally:
    lookups: int = 0
    should_hit: int = 0
    served: int = 0
    wrong: int = 0
    right_served: int = 0

    def add(self, other: Tally) -> None:
        for name in ("lookups", "should_hit", "served", "wrong", "right_served"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def wrong_rate(self) -> float:
        return self.wrong / self.served if self.served else 0.0


Tallies = dict[float, dict[str, Tally]]  # bound -> dataset -> what its stream served
Points = list[tuple[float, bool]]  # per lookup: the cosine a fixed threshold serves, right?


def audited(text: str, rate: float) -> bool:
    """A draw at `rate`, stable across runs and independent of the fit/held-back split."""
    return int(hashlib.sha1(f"audit:{text}".encode()).hexdigest(), 16) % 10_000 < rate * 10_000


async def _store_all(stub: Stub, context: RequestContext, space: Space, limit: Semaphore) -> None:
    async def one(text: str, label: str) -> None:
        async with limit:
            request = pb.StoreRequest(
                context=context,
                model_class=MODEL_CLASS,
                messages=user_turn(text),
                content=label,
                model=MODEL_CLASS,
            )
            await stub.Store(request, timeout=120)

    await asyncio.gather(*(one(text, label) for text, label in space.entries.items()))


async def stream_through(
    stub: Stub, context: RequestContext, space: Space, rate: float, audit: float, limit: Semaphore
) -> Tally:
    """`replay` through the service: the same stream, audits and shadow checks, over gRPC."""
    await _store_all(stub, context, space, limit)
    tally = Tally()
    for probe in space.probes:
        tally.lookups += 1
        tally.should_hit += probe.expected is not None
        messages = user_turn(probe.text)
        async with limit:
            asked = pb.LookupRequest(
                context=context,
                model_class=MODEL_CLASS,
                messages=messages,
                allow_semantic=True,
                max_wrong_rate=rate,
            )
            found = await stub.Lookup(asked, timeout=120)
        report: tuple[str, bool, bool] | None = None  # entry, verdict, shadow
        if found.kind != pb.HIT_KIND_MISS:
            correct = found.content == probe.expected
            tally.served += 1
            tally.wrong += not correct
            tally.right_served += correct
            if found.kind == pb.HIT_KIND_SEMANTIC and audited(probe.text, audit):
                report = (found.entry_id, correct, False)
        elif found.HasField("nearest_rejected"):
            rejected = found.nearest_rejected
            report = (rejected.entry_id, rejected.content == probe.expected, True)
        if report is not None:
            entry, right, shadow = report
            verdict = pb.HIT_VERDICT_RIGHT if right else pb.HIT_VERDICT_WRONG
            async with limit:
                reported = pb.ReportHitRequest(
                    context=context,
                    model_class=MODEL_CLASS,
                    messages=messages,
                    entry_id=entry,
                    verdict=verdict,
                    shadow=shadow,
                )
                await stub.ReportHit(reported, timeout=120)
    return tally


async def oracle_through(
    stub: Stub, context: RequestContext, space: Space, limit: Semaphore
) -> Points:
    """`static_points` through the service: unbounded lookups, never reported, so the cache's
    rule checks at its cosine floor pick what a fixed threshold would serve."""
    await _store_all(stub, context, space, limit)

    async def one(probe: Probe) -> tuple[float, bool]:
        async with limit:
            asked = pb.LookupRequest(
                context=context,
                model_class=MODEL_CLASS,
                messages=user_turn(probe.text),
                allow_semantic=True,
            )
            found = await stub.Lookup(asked, timeout=120)
        if found.kind == pb.HIT_KIND_MISS:
            return 0.0, False
        return found.similarity, found.content == probe.expected

    return list(await asyncio.gather(*(one(probe) for probe in space.probes)))


async def _through(address: str, spaces: dict[str, Space], audit: float) -> tuple[Tallies, Points]:
    # One tenant per (bound, dataset), so each stream learns only from its own verdicts; the
    # streams run side by side (each in order), which lets the service batch their embeddings.
    limit = Semaphore(48)
    async with grpc.aio.insecure_channel(address) as channel:
        stub: Stub = pb_grpc.SemanticCacheServiceStub(channel)
        keys = [(rate, name) for rate in BOUNDS for name in spaces]
        streams = [
            stream_through(stub, tenant(f"bound-{rate:g}-{name}"), spaces[name], rate, audit, limit)
            for rate, name in keys
        ]
        oracles = [oracle_through(stub, tenant(f"oracle-{n}"), s, limit) for n, s in spaces.items()]
        tallies = asyncio.gather(*streams)
        points = asyncio.gather(*oracles)
        await asyncio.gather(tallies, points)
    found: Tallies = {rate: {} for rate in BOUNDS}
    for (rate, name), tally in zip(keys, tallies.result(), strict=True):
        found[rate][name] = tally
    return found, [pt for group in points.result() for pt in group]


def via_service(
    spaces: dict[str, Space], audit: float, service: CacheService
) -> tuple[Tallies, Points]:
    """Every bound over every dataset through one cache service: rule checks, cosine FLOOR."""
    env = {"SLUICE_CACHE_VERIFY": "rules", "SLUICE_CACHE_MIN_SIMILARITY": str(FLOOR)}
    with service(env) as address:
        started = time.monotonic()
        found = asyncio.run(_through(address, spaces, audit))
        took = time.monotonic() - started
        print(f"error-bound replay, service run: {took:.0f}s", file=sys.stderr)
    return found

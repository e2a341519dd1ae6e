"""Every service of the real mesh serves Prometheus metrics, and a handful of requests with
known figures moves the counters by exactly those figures: the cost counters by the responses'
cost tables, the escalation counter by the one refusal, the batcher's by the one coalesced call,
the RPC histograms by the calls each hop served."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sluice.router.v1 import router_service_pb2 as router_pb

from shared.mesh import GRPC_SERVICES, Mesh
from tests.support import DEV_KEY, ask, patch_region, router_stub, stage_lines, with_context

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
NANO = 1e-9
ROUTER_RPC = ("sluice.router.v1.RouterService", "Complete")


def scrape(mesh: Mesh) -> dict[str, Samples]:
    scraped: dict[str, Samples] = {}
    for name in GRPC_SERVICES:
        url = mesh.metrics_url(name)
        assert url, f"the mesh plans no metrics port for the {name}"
        text = httpx.get(url, timeout=5).text
        scraped[name] = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
    return scraped


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and wanted <= got)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def rpcs(before: Samples, after: Samples, service: str, method: str, code: str = "OK") -> float:
    labels = {"grpc_service": service, "grpc_method": method, "grpc_code": code}
    return moved(before, after, "sluice_grpc_server_handling_seconds_count", **labels)


def unique(text: str) -> str:
    return f"{text} (metrics {uuid.uuid4().hex[:8]})"


async def send_known_requests(
    channel: grpc.aio.Channel, mesh: Mesh
) -> list[router_pb.CompleteResponse]:
    """Three plain misses, an exact repeat of the first (a hit), a refusal that escalates, and
    two identical uncached calls at once that share one upstream call."""
    stub = router_stub(channel)

    async def complete(request: router_pb.CompleteRequest) -> router_pb.CompleteResponse:
        return await stub.Complete(request, metadata=DEV_KEY, timeout=30)

    # The first is long enough to be sent to the compressor.
    plain = [ask(with_context(unique("What is a write-ahead log?")))]
    plain.extend(ask(unique(f"Explain topic {n}")) for n in range(2))
    responses = [await complete(request) for request in plain]
    responses.append(await complete(plain[0]))
    responses.append(await complete(ask(unique("Write a limerick [sim:refuse]"))))
    patch_region(mesh, "us-east", ttft_median_ms=600, ttft_p99_ms=700)
    shared = ask(unique("Compare HTTP/2 and HTTP/3"), cache_mode=router_pb.CACHE_MODE_BYPASS)
    responses.extend(await asyncio.gather(complete(shared), complete(shared)))
    return responses


def wait_for_stores(mesh: Mesh, before: Samples, stores: int) -> Samples:
    """The cache's Stores run after the answers; wait until they are in."""
    deadline = time.monotonic() + 30
    while True:
        after = scrape(mesh)["cache"]
        done = rpcs(before, after, "sluice.cache.v1.SemanticCacheService", "Store")
        if done >= stores or time.monotonic() > deadline:
            return after
        time.sleep(0.2)


def wait_for_exact_hit(mesh: Mesh, before: Samples) -> Samples:
    """A hit served from the router's copy reaches the cache's counters with the router's
    next poll of the change feed; wait until it is in."""
    deadline = time.monotonic() + 30
    while True:
        after = scrape(mesh)["cache"]
        hits = moved(before, after, "sluice_cache_lookups_total", tenant="dev", result="exact_hit")
        if hits >= 1 or time.monotonic() > deadline:
            return after
        time.sleep(0.2)


async def test_counters_move_by_exactly_the_requests_figures(
    channel: grpc.aio.Channel, mesh: Mesh
) -> None:
    before = scrape(mesh)
    responses = await send_known_requests(channel, mesh)
    hit, refused, pair = responses[3], responses[4], responses[5:]
    assert hit.cache_hit and sum(r.cache_hit for r in responses) == 1
    assert "refusal" in stage_lines(refused)["tier 1"].detail and refused.tier == 2
    after = scrape(mesh)
    after["cache"] = wait_for_stores(mesh, before["cache"], stores=4)

    router_before, router_after = before["router"], after["router"]

    def router(name: str, **labels: str) -> float:
        return moved(router_before, router_after, name, **labels)

    costs = sum(r.cost.total_cost_nano_usd for r in responses) * NANO
    baselines = sum(r.cost.baseline_cost_nano_usd for r in responses) * NANO
    avoided = sum(r.cost.cost_avoided_nano_usd for r in responses) * NANO
    assert router("sluice_router_requests_total") == len(responses) == 7
    assert router("sluice_router_requests_total", served_by="cache") == 1
    assert router("sluice_router_cost_usd_total") == pytest.approx(costs, abs=1e-12)
    assert router("sluice_router_stage_cost_usd_total") == pytest.approx(costs, abs=1e-12)
    assert router("sluice_router_baseline_cost_usd_total") == pytest.approx(baselines, abs=1e-12)
    saved = router("sluice_router_baseline_cost_usd_total") - router("sluice_router_cost_usd_total")
    assert saved == pytest.approx(avoided, abs=1e-12)
    under = sum(max(0, r.cost.cost_avoided_nano_usd) for r in responses) * NANO
    over = sum(max(0, -r.cost.cost_avoided_nano_usd) for r in responses) * NANO
    assert router("sluice_router_cost_avoided_usd_total") == pytest.approx(under, abs=1e-12)
    assert router("sluice_router_cost_overrun_usd_total") == pytest.approx(over, abs=1e-12)
    by_answer = {"model": refused.model, "tier": "2", "region": refused.region}
    assert router("sluice_router_cost_usd_total", **by_answer) == pytest.approx(
        sum(r.cost.total_cost_nano_usd for r in responses if r.tier == 2) * NANO, abs=1e-12
    )
    assert router("sluice_router_escalations_total") == 1
    assert router("sluice_router_escalations_total", tier="1", gate="refusal") == 1
    assert rpcs(router_before, router_after, *ROUTER_RPC) == 7

    # Upstream calls: three misses, two tiers for the refusal, one shared by the pair.
    batcher = {k: moved(before["batcher"], after["batcher"], k) for k in _BATCHER}
    assert batcher == {
        "sluice_batcher_calls_total": 7,
        "sluice_batcher_coalesced_calls_total": 1,
        "sluice_batcher_packed_calls_total": 0,
        "sluice_batcher_pack_fallbacks_total": 0,
    }
    dispatcher = before["dispatcher"], after["dispatcher"]
    assert rpcs(*dispatcher, "sluice.dispatcher.v1.RegionalDispatcherService", "Dispatch") == 6
    # No fault is injected, so nothing is retried or ejected. A hedge depends on timing (a
    # first token later than the endpoint's p95, which a busy machine can cause): not a fixed
    # figure, but one never won more often than sent.
    for quiet in ("retries", "ejections"):
        assert moved(*dispatcher, f"sluice_dispatcher_{quiet}_total") == 0, quiet
    retry_refused = moved(*dispatcher, "sluice_dispatcher_budget_exhausted_total", budget="retry")
    assert retry_refused == 0
    # A hedge its budget refused is a hedge that timing asked for: counted, but not fixed.
    hedges = moved(*dispatcher, "sluice_dispatcher_hedges_total")
    hedge_refused = moved(*dispatcher, "sluice_dispatcher_budget_exhausted_total", budget="hedge")
    assert 0 <= hedge_refused <= 6 - hedges
    assert 0 <= moved(*dispatcher, "sluice_dispatcher_hedges_won_total") <= hedges <= 6
    cache = before["cache"], after["cache"]
    # The repeat is answered from the router's own copy when the first answer's store is in
    # by then (exact_local.py): no Lookup then, and the cache counts the hit on the router's
    # next poll of its change feed.
    copies = sum(stage_lines(r)["cache"].detail.endswith("(router copy)") for r in responses)
    assert rpcs(*cache, "sluice.cache.v1.SemanticCacheService", "Lookup") == 5 - copies
    assert rpcs(*cache, "sluice.cache.v1.SemanticCacheService", "Store") == 4
    # The cache's own view of the same five lookups: the one exact hit and four misses.
    cache = before["cache"], wait_for_exact_hit(mesh, before["cache"])
    assert moved(*cache, "sluice_cache_lookups_total", tenant="dev", result="exact_hit") == 1
    assert moved(*cache, "sluice_cache_lookups_total", tenant="dev", result="miss") == 4
    sent = [stage_lines(r).get("compressor") for r in responses]
    compressed = sum(line is not None and "not sent" not in line.detail for line in sent)
    compressor = before["compressor"], after["compressor"]
    service = "sluice.compressor.v1.PromptCompressorService"
    assert rpcs(*compressor, service, "Compress") == compressed == 1
    assert len({r.content for r in pair}) == 1


_BATCHER = (
    "sluice_batcher_calls_total",
    "sluice_batcher_coalesced_calls_total",
    "sluice_batcher_packed_calls_total",
    "sluice_batcher_pack_fallbacks_total",
)


def test_every_service_serves_its_rpc_latency(mesh: Mesh) -> None:
    for name in GRPC_SERVICES:
        url = mesh.metrics_url(name)
        assert url is not None
        text = httpx.get(url, timeout=5).text
        assert "# TYPE sluice_grpc_server_handling_seconds histogram" in text, name

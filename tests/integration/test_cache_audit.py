"""Sampled audits of semantic hits through the real mesh: with every hit audited, a hit the
models now answer differently is removed and counted, and one they agree with is reported
right and stays."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import yaml
from sluice.cache.v1 import cache_service_pb2 as cache_pb
from sluice.cache.v1 import cache_service_pb2_grpc as cache_grpc
from sluice.common.v1 import common_pb2
from sluice.router.v1 import router_service_pb2_grpc as router_grpc

from services.router.config import DEFAULT_POLICY
from shared.mesh import Mesh
from shared.otlp_receiver import OtlpReceiver, SpanRecord
from tests.support import DEV_KEY, ask, running_mesh, simulator_stats, stage_lines

pytestmark = pytest.mark.integration

STORED = "What is the capital of France?"
# MiniLM cosine 0.94 to STORED: a semantic hit. Both name "capital of France", so the
# simulator's default rule answers both with SIMULATED, and an audit gets that short answer.
ASKED = "Which city is the capital of France?"
SIMULATED = "The capital of France is Paris."
CONTEXT = common_pb2.RequestContext(tenant_id="dev")
# What the router sends for a request that sets no sampling: the class's temperature, 0.
SAMPLING = common_pb2.SamplingParams(temperature=0.0)


@pytest.fixture(scope="module")
def audited_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, OtlpReceiver]]:
    """A mesh whose router audits every semantic hit of the `dev` tenant."""
    log_dir = tmp_path_factory.mktemp("audit-mesh")
    policy = yaml.safe_load(DEFAULT_POLICY.read_text())
    policy["tenants"]["dev"]["cache"] = {"audit_rate": 1.0}
    policy_file = log_dir / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy))
    with running_mesh(log_dir, {"SLUICE_ROUTER_POLICY": str(policy_file)}) as running:
        yield running


@pytest.fixture
def stubs(
    audited_mesh: tuple[Mesh, OtlpReceiver],
) -> Iterator[tuple[router_grpc.RouterServiceStub, cache_grpc.SemanticCacheServiceStub]]:
    mesh, _ = audited_mesh
    with (
        grpc.insecure_channel(mesh.address("router")) as router,
        grpc.insecure_channel(mesh.address("cache")) as cache,
    ):
        yield router_grpc.RouterServiceStub(router), cache_grpc.SemanticCacheServiceStub(cache)


def conversation(system: str, question: str) -> list[common_pb2.ChatMessage]:
    return [
        common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=system),
        common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=question),
    ]


def cache_lookup(
    cache: cache_grpc.SemanticCacheServiceStub, system: str, question: str
) -> cache_pb.LookupResponse:
    """The lookup the router makes for this request, sent straight to the cache."""
    request = cache_pb.LookupRequest(
        context=CONTEXT,
        model_class="chat",
        messages=conversation(system, question),
        sampling=SAMPLING,
        allow_semantic=True,
    )
    found: cache_pb.LookupResponse = cache.Lookup(request, timeout=30)
    return found


def store(
    cache: cache_grpc.SemanticCacheServiceStub, system: str, question: str, content: str
) -> None:
    """Puts an answer in the cache directly, as an earlier request's store would have."""
    cache.Store(
        cache_pb.StoreRequest(
            context=CONTEXT,
            model_class="chat",
            messages=conversation(system, question),
            sampling=SAMPLING,
            content=content,
            model="Qwen/Qwen3-8B",
            finish_reason=common_pb2.FINISH_REASON_STOP,
        ),
        timeout=30,
    )


def failures(cache: cache_grpc.SemanticCacheServiceStub) -> int:
    stats = cache.Stats(cache_pb.StatsRequest(context=CONTEXT), timeout=30)
    return int(stats.verification_failures)


def eventually(check: Callable[[], Any], timeout_s: float = 30) -> Any:
    """Polls until check() is truthy: the audit runs after the caller has its answer."""
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError("the background audit did not finish in time")
        time.sleep(0.1)
    return found


def audit_span(receiver: OtlpReceiver, trace_id: str) -> SpanRecord | None:
    return next((s for s in receiver.spans(trace_id) if s.name == "audit"), None)


def test_a_hit_the_models_now_answer_differently_is_removed_and_counted(
    audited_mesh: tuple[Mesh, OtlpReceiver],
    stubs: tuple[router_grpc.RouterServiceStub, cache_grpc.SemanticCacheServiceStub],
) -> None:
    _, receiver = audited_mesh
    router, cache = stubs
    system = f"You answer geography questions. Session {uuid.uuid4().hex}."
    # A wrong answer already in the cache, as a stale or mismatched entry would be.
    store(cache, system, STORED, "Lyon.")
    before = failures(cache)
    served = router.Complete(ask(ASKED, system=system), metadata=DEV_KEY, timeout=30)
    # The caller gets the cached answer at once, unchanged and free.
    assert served.cache_hit and served.content == "Lyon."
    assert "semantic hit" in stage_lines(served)["cache"].detail
    assert served.cost.total_cost_nano_usd == 0
    # The audit asks the cascade ("The capital of France is Paris."), disagrees, reports WRONG.
    eventually(lambda: failures(cache) == before + 1)
    assert cache_lookup(cache, system, ASKED).kind == cache_pb.HIT_KIND_MISS
    assert cache_lookup(cache, system, STORED).kind == cache_pb.HIT_KIND_MISS
    span = eventually(lambda: audit_span(receiver, served.trace_id))
    assert span.attributes["sluice.cache.audit.verdict"] == "wrong"
    assert span.attributes["sluice.cost.usd"] > 0
    # The next request misses and is answered fresh.
    again = router.Complete(ask(ASKED, system=system), metadata=DEV_KEY, timeout=30)
    assert not again.cache_hit and again.content == SIMULATED


def test_a_hit_the_models_agree_with_is_reported_right_and_stays(
    audited_mesh: tuple[Mesh, OtlpReceiver],
    stubs: tuple[router_grpc.RouterServiceStub, cache_grpc.SemanticCacheServiceStub],
) -> None:
    mesh, receiver = audited_mesh
    router, cache = stubs
    system = f"You answer geography questions. Session {uuid.uuid4().hex}."
    first = router.Complete(ask(STORED, system=system), metadata=DEV_KEY, timeout=30)
    assert not first.cache_hit and first.content == SIMULATED
    entry = eventually(lambda: cache_lookup(cache, system, STORED).entry_id)
    before = failures(cache)
    calls = simulator_stats(mesh)["regions"]["us-east"]["received"]
    served = router.Complete(ask(ASKED, system=system), metadata=DEV_KEY, timeout=30)
    assert served.cache_hit and served.content == SIMULATED
    span = eventually(lambda: audit_span(receiver, served.trace_id))
    assert span.attributes["sluice.cache.audit.verdict"] == "right"
    # The audit really asked the models again, and the entry it confirmed is still served.
    assert simulator_stats(mesh)["regions"]["us-east"]["received"] == calls + 1
    report = eventually(lambda: report_span(receiver, served.trace_id))
    assert report.service == "sluice-cache"
    assert report.attributes["sluice.cache.report.shadow"] is False
    still = cache_lookup(cache, system, ASKED)
    assert (still.kind, still.entry_id) == (cache_pb.HIT_KIND_SEMANTIC, entry)
    assert failures(cache) == before


def report_span(receiver: OtlpReceiver, trace_id: str) -> SpanRecord | None:
    """The cache's server span of the ReportHit the audit sent."""
    return next(
        (
            s
            for s in receiver.spans(trace_id)
            if s.name.endswith("/ReportHit") and s.service == "sluice-cache"
        ),
        None,
    )

"""An acknowledged Store survives `kill -9`: the real process, killed for real, restarted."""

from __future__ import annotations

import signal

import grpc
import pytest
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc
from sluice.common.v1 import common_pb2

from tests.integration.test_cache_service import free_port, start, wait_serving

pytestmark = pytest.mark.integration

CONTEXT = common_pb2.RequestContext(tenant_id="acme")
SAMPLING = common_pb2.SamplingParams(temperature=0.0, max_tokens=32)


def conversation(question: str) -> list[common_pb2.ChatMessage]:
    return [
        common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content="Answer briefly."),
        common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=question),
    ]


def store(stub: pb_grpc.SemanticCacheServiceStub, question: str, content: str) -> str:
    request = pb.StoreRequest(
        context=CONTEXT,
        model_class="small",
        messages=conversation(question),
        sampling=SAMPLING,
        content=content,
        model="gpt-4o-mini",
        tags=["durability"],
    )
    return str(stub.Store(request, timeout=30).entry_id)


def lookup(stub: pb_grpc.SemanticCacheServiceStub, question: str) -> pb.LookupResponse:
    request = pb.LookupRequest(
        context=CONTEXT,
        model_class="small",
        messages=conversation(question),
        sampling=SAMPLING,
        allow_semantic=True,
    )
    response: pb.LookupResponse = stub.Lookup(request, timeout=30)
    return response


def test_stores_survive_sigkill_and_restart(tmp_path):
    data = str(tmp_path / "data")
    port = free_port()
    first = start(tmp_path / "first.log", port, SLUICE_CACHE_DATA_DIR=data)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_serving(channel, first, tmp_path / "first.log")
            stub = pb_grpc.SemanticCacheServiceStub(channel)
            paris = store(stub, "What is the capital of France?", "Paris.")
            for number in range(20):
                store(stub, f"What is {number} times {number}?", str(number * number))
            # No SIGTERM, no drain, no flush: the process is gone between two instructions.
            first.send_signal(signal.SIGKILL)
            assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    port = free_port()
    second = start(tmp_path / "second.log", port, SLUICE_CACHE_DATA_DIR=data)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_serving(channel, second, tmp_path / "second.log")
            stub = pb_grpc.SemanticCacheServiceStub(channel)
            exact = lookup(stub, "What is the capital of France?")
            assert (exact.kind, exact.entry_id, exact.content) == (
                pb.HIT_KIND_EXACT,
                paris,
                "Paris.",
            )
            semantic = lookup(stub, "What's the capital city of France?")
            assert (semantic.kind, semantic.entry_id) == (pb.HIT_KIND_SEMANTIC, paris)
            assert lookup(stub, "What is 7 times 7?").content == "49"
            stats = stub.Stats(pb.StatsRequest(context=CONTEXT), timeout=10)
            assert stats.entries == 21 and stats.skipped_bad_vectors == 0
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=60) == 0
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()

"""A persisted store opened by a cache with another embedder (the int8 export over a store the
fp32 one wrote): refused when the policy says so, re-embedded by default, and recorded."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import grpc
import pytest
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc

from tests.integration.test_cache_durability import lookup, store
from tests.integration.test_cache_service import free_port, start, wait_serving

pytestmark = pytest.mark.integration
QUESTION = "What is the capital of France?"


def serve_then_stop(log: Path, data: str, act, **env: str) -> None:
    """Starts the cache on `data`, runs act(stub) once it serves, then stops it with SIGTERM."""
    port = free_port()
    process = start(log, port, SLUICE_CACHE_DATA_DIR=data, SLUICE_SHUTDOWN_ANNOUNCE_S="0", **env)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_serving(channel, process, log)
            act(pb_grpc.SemanticCacheServiceStub(channel))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_an_int8_cache_refuses_or_reembeds_a_store_the_fp32_one_wrote(tmp_path):
    data = str(tmp_path / "data")
    serve_then_stop(tmp_path / "fp32.log", data, lambda stub: store(stub, QUESTION, "Paris."))

    refused_log = tmp_path / "refused.log"
    refused = start(
        refused_log,
        free_port(),
        SLUICE_CACHE_DATA_DIR=data,
        SLUICE_CACHE_EMBED_VARIANT="int8",
        SLUICE_CACHE_EMBEDDER_MISMATCH="refuse",
    )
    try:
        assert refused.wait(timeout=240) != 0
    except subprocess.TimeoutExpired:
        refused.kill()
        refused.wait()
        raise
    said = refused_log.read_text()
    assert "cache cannot start" in said and "/fp32, but this cache embeds with" in said, said
    assert "/int8" in said

    def exact_hit(stub: pb_grpc.SemanticCacheServiceStub) -> None:
        found = lookup(stub, QUESTION)
        assert (found.kind, found.content) == (pb.HIT_KIND_EXACT, "Paris.")

    reembedded_log = tmp_path / "reembedded.log"
    serve_then_stop(reembedded_log, data, exact_hit, SLUICE_CACHE_EMBED_VARIANT="int8")
    assert "re-embedding 1 stored queries" in reembedded_log.read_text()
    # The store now records the int8 embedder: refusing mismatches, it starts as it is.
    serve_then_stop(
        tmp_path / "again.log",
        data,
        exact_hit,
        SLUICE_CACHE_EMBED_VARIANT="int8",
        SLUICE_CACHE_EMBEDDER_MISMATCH="refuse",
    )

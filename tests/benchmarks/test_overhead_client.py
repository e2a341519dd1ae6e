"""The overhead benchmark's own parts: its HTTP client, and how its figures are derived."""

from __future__ import annotations

import asyncio
import os

import pytest

from benchmarks.overhead_http import KeepAliveClient
from benchmarks.overhead_load import RunResult, cache_kind
from benchmarks.overhead_procs import gateway_rss_mb
from benchmarks.overhead_report import summary
from shared.mesh import process_rss_mb as rss_mb


async def _serve(replies: list[bytes]) -> tuple[asyncio.Server, list[bytes]]:
    """A loopback server answering each request with the next canned reply; `seen` gets each
    request, and b"connection" for each connection opened."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(b"connection")
        while replies:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            seen.append(head + await reader.readexactly(length))
            writer.write(replies.pop(0))
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), seen


async def test_content_length_and_chunked_replies_on_one_kept_connection() -> None:
    server, seen = await _serve(
        [
            b'HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n{"a":1}',
            b"HTTP/1.1 429 Too Many\r\ntransfer-encoding: chunked\r\n\r\n"
            b'4\r\n{"b"\r\n3\r\n:2}\r\n0\r\n\r\n',
        ]
    )
    port = server.sockets[0].getsockname()[1]
    client = KeepAliveClient(f"http://127.0.0.1:{port}", size=1)
    try:
        first = await client.post("/v1/x", b"{}", {"authorization": "Bearer k"})
        second = await client.post("/v1/x", b"[1]", {})
    finally:
        await client.aclose()
        server.close()
    assert (first.status, first.body) == (200, b'{"a":1}')
    assert (second.status, second.body) == (429, b'{"b":2}')
    assert len(seen) == 3 and seen[0] == b"connection"  # both requests on one connection
    assert seen[1].startswith(b"POST /v1/x HTTP/1.1\r\n") and b"authorization: Bearer k" in seen[1]


def test_only_plain_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="only http"):
        KeepAliveClient("https://example.com", size=1)


def test_the_cache_stage_detail_names_the_kind_of_answer() -> None:
    assert cache_kind("exact hit") == "exact"
    assert cache_kind("semantic hit (similarity 0.931)") == "semantic"
    assert cache_kind("miss") == cache_kind("bypassed by request") == "miss"


def _run(latencies_ms: list[float], wall_s: float) -> RunResult:
    run = RunResult(wall_s=wall_s)
    run.latencies_s = [ms / 1000 for ms in latencies_ms]
    run.by_kind = {"": list(run.latencies_s)}
    return run


def test_added_latency_subtracts_the_upstream_time_and_ratios_are_same_run() -> None:
    results = {
        ("miss", "direct", 1): _run([2.0] * 100, 1.0),
        ("miss", "direct", 16): _run([2.0] * 100, 1.0),
        ("miss", "sluice-http", 16): _run([12.0] * 100, 1.0),
        ("miss", "litellm", 16): _run([22.0] * 100, 2.0),
        ("exact", "sluice-http", 16): _run([4.0] * 100, 1.0),
    }
    out = summary(results, [1, 16], {})
    assert out["upstream_ms"] == pytest.approx(2.0)
    assert out["miss_p99_ms_c16"] == pytest.approx(10.0)  # 12 ms seen, 2 ms of it upstream
    assert out["p99_ratio_vs_litellm_c16"] == pytest.approx(0.5)  # 10 / 20
    assert out["rps_ratio_vs_litellm_c16"] == pytest.approx(2.0)  # 100/s against 50/s
    assert out["exact_hit_p99_ms_c16"] == pytest.approx(4.0)  # a hit is reported whole
    assert out["targets_met"]["miss_p99_le_litellm_c16"] is True
    assert out["targets_met"]["exact_hit_p99_le_5ms_c16"] is True
    # Nothing measured at c64 or on the semantic path: unknown, not met.
    assert out["targets_met"]["miss_p99_le_litellm_c64"] is None
    assert out["semantic_hit_p99_ms_c16"] is None


def test_the_miss_ratios_are_the_worse_of_the_two_passes() -> None:
    results = {
        ("miss", "direct", 1): _run([2.0] * 100, 1.0),
        # Pass 0: Sluice's p99 half LiteLLM's, twice its rate; pass 1: 1.5x its p99, 0.8x rate.
        ("miss/0", "sluice-http", 16): _run([12.0] * 100, 1.0),
        ("miss/0", "litellm", 16): _run([22.0] * 100, 2.0),
        ("miss/1", "sluice-http", 16): _run([17.0] * 100, 1.25),
        ("miss/1", "litellm", 16): _run([12.0] * 100, 1.0),
    }
    out = summary(results, [1, 16], {}, passes=2, mesh_rss_mb=650.0)
    assert out["p99_ratios_by_pass_c16"] == [pytest.approx(0.5), pytest.approx(1.5)]
    assert out["p99_ratio_vs_litellm_c16"] == pytest.approx(1.5)
    assert out["rps_ratio_vs_litellm_c16"] == pytest.approx(0.8)
    assert out["targets_met"]["miss_p99_le_litellm_c16"] is False
    assert out["mesh_rss_mb"] == 650.0
    assert out["targets_met"]["mesh_rss_le_700mb"] is True


def test_the_mesh_rss_leaves_out_the_upstream_simulator() -> None:
    by_process = {"router": 120.0, "cache": 300.5, "simulator": 84.0}
    assert gateway_rss_mb(by_process) == pytest.approx(420.5)
    assert rss_mb(os.getpid()) > 0

"""The machine-floor benchmark: its servers really answer, and its bounds follow Little's law."""

from __future__ import annotations

import pytest

from benchmarks.overhead_floor import LEVELS, measure_servers, report
from benchmarks.overhead_load import RunResult


def test_every_floor_server_answers_every_request_at_every_level() -> None:
    results = measure_servers(requests=30, warmup=5)

    assert set(results) == {"bare HTTP", "HTTP + one gRPC hop", "HTTP + in-process exact lookup"}
    for by_level in results.values():
        assert sorted(by_level) == sorted(LEVELS)
        for run in by_level.values():
            assert run.errors == 0, run.first_error
            assert len(run.latencies_s) == 30
            assert run.rps > 0


def _run(latency_s: float, count: int, wall_s: float) -> RunResult:
    return RunResult(latencies_s=[latency_s] * count, wall_s=wall_s)


def test_report_derives_the_semantic_floor_from_cores_and_embedding_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    runs = {level: _run(0.004, 100, 0.1) for level in LEVELS}
    hop = {level: _run(0.008, 100, 0.2) for level in LEVELS}
    local = {level: _run(0.005, 100, 0.125) for level in LEVELS}

    figures = report(
        {"bare HTTP": runs, "HTTP + one gRPC hop": hop, "HTTP + in-process exact lookup": local},
        embed_s=0.004,
    )

    # 2 cores / 4 ms = 500 questions/s; 16 in flight wait 16 / 500 s = 32 ms on average.
    assert figures["semantic_hit_mean_ms_floor_c16"] == pytest.approx(32.0)
    assert figures["floor_http_p99_ms_c16"] == pytest.approx(4.0)
    assert figures["floor_http_grpc_p99_ms_c16"] == pytest.approx(8.0)
    assert figures["floor_http_rps_c16"] == 1000
    assert figures["floor_exact_local_p99_ms_c16"] == pytest.approx(5.0)
    assert figures["errors"] == 0

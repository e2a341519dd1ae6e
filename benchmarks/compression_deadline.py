"""Compression of documents the compressor has never seen, under the caller's deadline.

    python -m benchmarks.compression_deadline [--data ../shared/data] [--questions 16]
        [--budgets 0,5,2]

The router waits SLUICE_ROUTER_COMPRESSOR_TIMEOUT_S (5 s) for the compressor. Embedding a
document the compressor has not seen costs seconds per 10k tokens, so a long one cannot be
embedded in time. The extractive strategy then embeds chunks best-BM25 first until the pace
says the next slice would miss the deadline, and ranks the rest by BM25 alone.

This runs the real compressor service with its vector cache off (every call is cold) on
held-out L-Eval questions (NaturalQuestions pages and CUAD contracts, the first --questions of
each subset in hash order of their ids), at 4x, under each budget in turn ("0" = no deadline),
interleaving the budgets question by question so the machine's load falls on all of them. It
reports, per budget, how often the gold answer survived, the median and largest latency, how
many calls had to rank some chunks by BM25 alone, and how many failed. The last line printed
is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from sluice.compressor.v1 import compressor_service_pb2_grpc as pb_grpc

from benchmarks.common import DEFAULT_DATA, hash_order, markdown_table, running_service
from benchmarks.compression import CALL_TIMEOUT_S, Case, leval_cases, norm, request_for

RATIO = 0.25


def held_out_cases(data: Path, per_subset: int) -> list[Case]:
    chosen: list[Case] = []
    for name, dataset in (("natural_question", "leval-nq"), ("legal_contract_qa", "leval-cuad")):
        cases = [c for c in leval_cases(data, name, dataset) if c.held_out]
        cases.sort(key=lambda c: hash_order(c.question_id))
        chosen.extend(cases[:per_subset])
    return chosen


def run(
    stub: pb_grpc.PromptCompressorServiceStub, cases: Sequence[Case], budgets: Sequence[float]
) -> dict[float, list[dict[str, Any]]]:
    outcomes: dict[float, list[dict[str, Any]]] = {budget: [] for budget in budgets}
    for number, case in enumerate(cases):
        # Rotate the order, so no budget always runs first after a long document.
        shift = number % len(budgets)
        for budget in [*budgets[shift:], *budgets[:shift]]:
            outcomes[budget].append(_one(stub, case, budget))
    return outcomes


def _one(stub: pb_grpc.PromptCompressorServiceStub, case: Case, budget: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        response = stub.Compress(request_for(case, RATIO), timeout=budget or CALL_TIMEOUT_S)
    except grpc.RpcError as error:
        code = error.code() if isinstance(error, grpc.Call) else None
        return {"ok": False, "failed": str(code), "latency_s": time.perf_counter() - started}
    text = norm("\n".join(m.content for m in response.messages))
    return {
        "ok": any(norm(a) in text for a in case.answers),
        "failed": "",
        "partial": "before the deadline" in response.reason,
        "latency_s": time.perf_counter() - started,
        "ratio": response.original_tokens / max(1, response.compressed_tokens),
    }


def figures(outcomes: dict[float, list[dict[str, Any]]]) -> dict[str, Any]:
    result: dict[str, Any] = {"ratio": RATIO, "budgets": {}}
    for budget, rows in outcomes.items():
        latencies = [row["latency_s"] for row in rows]
        answered = [row for row in rows if not row["failed"]]
        result["budgets"]["none" if not budget else f"{budget:g}s"] = {
            "questions": len(rows),
            "retention_at_4x": round(sum(row["ok"] for row in rows) / len(rows), 4),
            "latency_p50_s": round(statistics.median(latencies), 2),
            "latency_max_s": round(max(latencies), 2),
            "partial": sum(bool(row.get("partial")) for row in answered),
            "failed": len(rows) - len(answered),
            "median_compression": round(statistics.median(r["ratio"] for r in answered), 2)
            if answered
            else None,
        }
    return result


def table(result: dict[str, Any]) -> str:
    rows = [
        [
            name,
            group["questions"],
            f"{100 * group['retention_at_4x']:.1f}%",
            group["latency_p50_s"],
            group["latency_max_s"],
            group["partial"],
            group["failed"],
        ]
        for name, group in result["budgets"].items()
    ]
    headers = ("deadline", "questions", "retained at 4x", "p50 s", "max s", "partial", "failed")
    return markdown_table(headers, rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--questions", type=int, default=16, help="held-out per subset")
    parser.add_argument("--budgets", default="0,5,2", help="seconds; 0 for no deadline")
    args = parser.parse_args(argv)
    budgets = [float(b) for b in args.budgets.split(",") if b]
    cases = held_out_cases(args.data, args.questions)
    env = {
        "SLUICE_COMPRESSOR_MIN_TOKENS": "0",
        "SLUICE_COMPRESSOR_EMBED_CACHE_SIZE": "0",
        "SLUICE_LOG_LEVEL": "WARNING",
    }
    with (
        tempfile.TemporaryDirectory(prefix="sluice-compression-deadline-") as tmp,
        running_service("compressor", env, log_path=Path(tmp) / "compressor.log") as address,
        grpc.insecure_channel(address) as channel,
    ):
        outcomes = run(pb_grpc.PromptCompressorServiceStub(channel), cases, budgets)
    result = figures(outcomes)
    print(f"{len(cases)} held-out questions, every call cold (vector cache off)")
    print(table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

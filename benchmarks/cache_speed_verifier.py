"""What hit verification costs: the cross-encoder's time per lookup, and the semantic-hit
latency through the real cache service with the old default (rules at cosine 0.90) and the
current one (read from services/cache/config.py, `banded` at 0.82 now), in one run. Called by
cache_speed.py.

- **Verifier cost**: `CrossEncoder.scores` on batches of 1, 4 and 8 (asked, stored) pairs of
  real questions (SEARCH_K = 8 caps the candidates a lookup can hand it), one thread.
- **Semantic hit p50**: `python -m services.cache` with each verifier, one namespace holding
  the look-alike set's stored questions (its must-hit pairs), then their paraphrases looked
  up one at a time over gRPC;
  the latency of the lookups answered HIT_KIND_SEMANTIC, and the ratio new / old.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc
from sluice.common.v1 import common_pb2

from benchmarks.common import hash_order, running_service
from benchmarks.lookalike_gen import load_pairs
from services.cache.config import Settings
from services.cache.verifiers.crossenc import DEFAULT_CROSSENC_PATH, CrossEncoder

OLD = ("rules", 0.90)


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3 if ordered else 0.0


def paraphrases(count: int) -> list[tuple[str, str]]:
    """(stored, asked) must-hit pairs of the look-alike set, whose paraphrases both verifiers
    serve some of (GPTCache's long paraphrases got no cross-encoder hit at all)."""
    pairs = [(p.stored, p.asked) for p in load_pairs() if p.must_hit]
    return sorted(dict(pairs).items(), key=lambda pair: hash_order("\n".join(pair)))[:count]


def verifier_cost(pairs: list[tuple[str, str]], repeats: int) -> dict[str, float]:
    model = CrossEncoder(DEFAULT_CROSSENC_PATH)
    swapped = [(asked, stored) for stored, asked in pairs]
    model.scores(swapped[:8])  # first run allocates
    out: dict[str, float] = {}
    for size in (1, 4, 8):
        samples = []
        for i in range(repeats):
            batch = [swapped[(i * size + j) % len(swapped)] for j in range(size)]
            started = time.perf_counter()
            model.scores(batch)
            samples.append(time.perf_counter() - started)
        out[f"pairs_{size}_p50_ms"] = _percentile(samples, 0.5)
    return out


async def _hit_latencies(address: str, pairs: list[tuple[str, str]]) -> list[float]:
    context = common_pb2.RequestContext(tenant_id="speed")

    def messages(text: str) -> list[common_pb2.ChatMessage]:
        return [common_pb2.ChatMessage(role=common_pb2.ROLE_USER, content=text)]

    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.SemanticCacheServiceStub(channel)
        for stored, _ in pairs:
            await stub.Store(pb.StoreRequest(context=context, model_class="bench",
                             messages=messages(stored), content=stored, model="bench"))  # fmt: skip
        latencies: list[float] = []
        for _, asked in pairs:
            request = pb.LookupRequest(context=context, model_class="bench",
                                       messages=messages(asked), allow_semantic=True)  # fmt: skip
            started = time.perf_counter()
            reply = await stub.Lookup(request, timeout=60)
            if reply.kind == pb.HIT_KIND_SEMANTIC:
                latencies.append(time.perf_counter() - started)
        return latencies


def service_hits(
    verify: str, floor: float, pairs: list[tuple[str, str]], logs: Path
) -> dict[str, Any]:
    env = {"SLUICE_CACHE_VERIFY": verify, "SLUICE_CACHE_MIN_SIMILARITY": str(floor),
           "SLUICE_CACHE_STORE": "memory://"}  # fmt: skip
    with running_service("cache", env, log_path=logs / f"speed-{verify}.log") as address:
        asyncio.run(_hit_latencies(address, pairs[:20]))  # warm-up: model sessions, channels
        latencies = asyncio.run(_hit_latencies(address, pairs[20:]))
    return {
        "verify": verify,
        "min_similarity": floor,
        "semantic_hits": len(latencies),
        "hit_p50_ms": _percentile(latencies, 0.5),
        "hit_p99_ms": _percentile(latencies, 0.99),
    }


def verifier_speed(quick: bool) -> dict[str, Any]:
    pairs = paraphrases(120 if quick else 400)
    cost = verifier_cost(pairs, 30 if quick else 200)
    defaults = Settings.from_env({})  # the default verifier and its floor, as the service has
    new = (defaults.verify, defaults.min_similarity)
    with tempfile.TemporaryDirectory() as logs:
        old_row, new_row = (service_hits(v, f, pairs, Path(logs)) for v, f in (OLD, new))
    both = old_row["semantic_hits"] and new_row["semantic_hits"]
    ratio = new_row["hit_p50_ms"] / old_row["hit_p50_ms"] if both else None
    return {"crossenc_cost": cost, "old_default": old_row, "new_default": new_row,
            "semantic_hit_p50_ratio": ratio}  # fmt: skip


def report(result: dict[str, Any]) -> list[str]:
    cost, old, new = result["crossenc_cost"], result["old_default"], result["new_default"]
    lines = [
        "Cross-encoder cost per lookup (1 thread): "
        + ", ".join(f"{k.split('_')[1]} pairs {v:.2f} ms" for k, v in cost.items()),
        "| verifier | floor | semantic hits | hit p50 | hit p99 |",
        "|---|---|---|---|---|",
    ]
    for row in (old, new):
        lines.append(f"| {row['verify']} | {row['min_similarity']} | {row['semantic_hits']} | "
                     f"{row['hit_p50_ms']:.2f} ms | {row['hit_p99_ms']:.2f} ms |")  # fmt: skip
    ratio = result["semantic_hit_p50_ratio"]
    lines.append(f"semantic hit p50, new / old default: x{ratio:.2f}" if ratio else "no hits")
    return lines


if __name__ == "__main__":
    outcome = verifier_speed("--quick" in sys.argv)
    print("\n".join(report(outcome)))
    print(json.dumps(outcome, sort_keys=True))

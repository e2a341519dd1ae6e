"""Does a tenant's error bound hold? A replay of the held-back halves of QQP, BANKING77 and
CLINC150 through the real cache service (`python -m services.cache` on loopback, rule checks,
cosine floor 0.80; cache_bound_service.py), with the data's labels as verdicts. `--in-process`
replays the same streams through SemanticCache in this process instead.

Each dataset is one namespace per bound (QQP's stored questions all together, so a lookup can
meet any of them). The probes of the held-back half come in hash order; for each one the cache
is asked with `max_wrong_rate` set, and then, as the router would:

- a semantic hit is served; a share of them (`--audit-rate`, by hash) is audited: its label is
  reported with ReportHit (a wrong one removes the entry);
- a miss that names a nearest rejected candidate gets a shadow check: whether that candidate's
  label is the probe's is reported with ReportHit(shadow=true).

Probes that repeat a stored text word for word are left out: they are exact hits, which no
bound governs. The cache starts cold, so every figure includes the learning. For each bound
(0.5%, 1%, 2%, 5%) it prints the wrong rate actually served (which must stay at or below the
bound), the share of lookups served, and the share of should-hit probes served, beside one
global cosine threshold chosen on the same stream (an oracle) as the one with most hits whose
wrong rate stays at the bound, with the same rule checks. A QQP lookup served another pair's
question counts as wrong (QQP labels pairs, not clusters), for the bound and the oracle alike.
The last line is JSON with `bound_violations`, the count of bounds whose served wrong rate
exceeded the bound.

    .venv/bin/python -m benchmarks.cache_bound            # through the service
    .venv/bin/python -m benchmarks.cache_bound --in-process [--embed-cache /tmp/vectors.npz]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from benchmarks.cache_bound_service import (
    BOUNDS,
    FLOOR,
    Points,
    Tallies,
    Tally,
    audited,
    via_service,
)
from benchmarks.cache_quality_data import load_workloads
from benchmarks.cache_service import CacheService, cache_process
from benchmarks.common import DEFAULT_DATA, embed, markdown_table
from services.cache.cache import CachePolicy, SemanticCache
from services.cache.model import CacheRequest, HitKind
from services.cache.records import CachedAnswer
from services.cache.verifiers import RuleVerifier, build_verifier
from services.cache.verifiers.replay import Space
from services.cache.verify import Pair, first_accepted
from shared.chat import Role, Turn

DATASETS = ("qqp", "banking77", "clinc150")


class VectorEmbedder:
    """The cache's QueryEmbedder over precomputed MiniLM vectors."""

    def __init__(self, vectors: dict[str, NDArray[np.float32]]) -> None:
        self._vectors = vectors

    @property
    def dim(self) -> int:
        return 384

    @property
    def ready(self) -> bool:
        return True

    async def embed(self, text: str) -> NDArray[np.float32]:
        return self._vectors[text]


def held_back(args: argparse.Namespace) -> dict[str, Space]:
    """One namespace per dataset, with the held-back probes only."""
    workloads = load_workloads(Path(args.data), args)
    spaces: dict[str, Space] = {}
    for name in DATASETS:
        pooled = Space(name)
        for space in workloads[name]:
            probes = [p for p in space.probes if not p.fit]
            if name == "qqp" and not probes:
                continue  # the pair's text_a would only be a distractor from the fit half
            pooled.entries.update(space.entries)
            pooled.probes.extend(probes)
        # A probe that is a stored text word for word is an exact hit, which no bound governs
        # (and whose "wrong" label would only be the data's: QQP repeats questions across
        # pairs, and the intent sets have texts in train and test under different intents).
        pooled.probes = [p for p in pooled.probes if p.text not in pooled.entries]
        spaces[name] = pooled
    return spaces


def request(space: str, text: str, rate: float | None = None) -> CacheRequest:
    return CacheRequest(space, "bench", (Turn(Role.USER, text),), max_wrong_rate=rate)


async def replay(space: Space, embedder: VectorEmbedder, rate: float, audit: float) -> Tally:
    """The bounded cache over one dataset's stream, with audits and shadow checks."""
    verifier = build_verifier("rules")
    cache = SemanticCache(
        embedder, CachePolicy(FLOOR, 1e9, 1_000_000), verifier=verifier, clock=lambda: 1e6
    )
    await cache.start()
    for text, label in space.entries.items():
        await cache.store(request(space.key, text), CachedAnswer(label, "bench"))
    tally = Tally()
    for probe in space.probes:
        tally.lookups += 1
        tally.should_hit += probe.expected is not None
        asked = request(space.key, probe.text, rate)
        found = await cache.lookup(asked)
        if found.kind is not HitKind.MISS and found.answer is not None:
            correct = found.answer.content == probe.expected
            tally.served += 1
            tally.wrong += not correct
            tally.right_served += correct
            if found.kind is HitKind.SEMANTIC and audited(probe.text, audit):
                await cache.report_hit(asked, found.entry_id, correct)
        elif found.nearest_rejected is not None:
            correct = found.nearest_rejected.content == probe.expected
            await cache.report_hit(asked, found.nearest_rejected.entry_id, correct, shadow=True)
    await cache.aclose()
    return tally


def static_points(
    space: Space, vectors: dict[str, NDArray[np.float32]]
) -> list[tuple[float, bool]]:
    """Per probe, the cosine and correctness of the candidate a fixed threshold would serve:
    the most similar one the rule checks do not veto (independent of the threshold)."""
    texts = list(space.entries)
    matrix = np.stack([vectors[t] for t in texts])
    checks = RuleVerifier()
    points: list[tuple[float, bool]] = []
    for probe in space.probes:
        scores = matrix @ vectors[probe.text]
        order = np.argsort(-scores)[:8]
        pairs = [
            (texts[i], Pair(probe.text, texts[i], float(scores[i]), space.key))
            for i in order
            if scores[i] >= FLOOR
        ]
        choice = first_accepted(checks, pairs)
        if choice.item is not None and choice.pair is not None:
            correct = space.entries[choice.item] == probe.expected
            points.append((choice.pair.similarity, correct))
        else:
            points.append((0.0, False))
    return points


def best_global(points: Sequence[tuple[float, bool]], rate: float) -> tuple[float, Tally]:
    """The fixed threshold with the most served hits whose served wrong rate is within `rate`."""
    best = (1.01, Tally())
    for threshold in np.arange(FLOOR, 1.0001, 0.005):
        served = [correct for score, correct in points if score >= threshold]
        wrong = served.count(False)
        if served and wrong <= rate * len(served) and len(served) > best[1].served:
            tally = Tally(len(points), 0, len(served), wrong, len(served) - wrong)
            best = (float(threshold), tally)
    return best


def in_process(spaces: dict[str, Space], args: argparse.Namespace) -> tuple[Tallies, Points]:
    """Every bound over every dataset through SemanticCache in this process (`--in-process`)."""
    texts = {t for s in spaces.values() for t in [*s.entries, *(p.text for p in s.probes)]}
    embed_cache = Path(args.embed_cache) if args.embed_cache else None
    vectors = embed(sorted(texts), embed_cache)
    embedder = VectorEmbedder(vectors)
    tallies: Tallies = {}
    for rate in BOUNDS:
        started = time.monotonic()
        tallies[rate] = {
            name: asyncio.run(replay(space, embedder, rate, args.audit_rate))
            for name, space in spaces.items()
        }
        print(f"bound {rate:.1%}: {time.monotonic() - started:.0f}s", file=sys.stderr)
    return tallies, [pt for s in spaces.values() for pt in static_points(s, vectors)]


def report(spaces: dict[str, Space], tallies: Tallies, points: Points, audit_rate: float,
           via: str) -> dict[str, object]:  # fmt: skip
    """The table (printed) and the figures, with `bound_violations`."""
    should_hit = sum(p.expected is not None for s in spaces.values() for p in s.probes)
    rows: list[list[str]] = []
    figures: dict[str, dict[str, object]] = {}
    violations = 0
    for rate in BOUNDS:
        pooled = Tally()
        for tally in tallies[rate].values():
            pooled.add(tally)
        threshold, fixed = best_global(points, rate)
        violations += pooled.wrong_rate > rate
        got: dict[str, object] = {
            "served_wrong_rate": round(pooled.wrong_rate, 4),
            "hit_rate": round(pooled.served / max(1, pooled.lookups), 4),
            "paraphrase_hit_rate": round(pooled.right_served / max(1, should_hit), 4),
            "global_threshold": round(threshold, 3),
            "global_wrong_rate": round(fixed.wrong_rate, 4),
            "global_hit_rate": round(fixed.served / max(1, len(points)), 4),
            "global_paraphrase_hit_rate": round(fixed.right_served / max(1, should_hit), 4),
            "per_dataset": {n: {"served": t.served, "wrong": t.wrong}
                            for n, t in tallies[rate].items()},
        }  # fmt: skip
        figures[f"{rate:g}"] = got
        rows.append([
            f"{rate:.1%}", f"{pooled.wrong_rate:.2%} ({pooled.wrong}/{pooled.served})",
            f"{got['hit_rate']:.1%}", f"{got['paraphrase_hit_rate']:.1%}",
            f"cos >= {threshold:.3f}" if fixed.served else "none qualifies",
            f"{fixed.wrong_rate:.2%} ({fixed.wrong}/{fixed.served})",
            f"{got['global_hit_rate']:.1%}", f"{got['global_paraphrase_hit_rate']:.1%}",
        ])  # fmt: skip
    headers = ["bound", "served wrong", "hits", "paraphrases hit", "global (oracle)",
               "its wrong", "its hits", "its paraphrases hit"]  # fmt: skip
    print(markdown_table(headers, rows))
    lookups = sum(len(s.probes) for s in spaces.values())
    print(f"\n{lookups} held-back lookups ({should_hit} should hit), {via}, audit rate "
          f"{audit_rate:.0%}, cosine floor {FLOOR}, rule checks on")  # fmt: skip
    return {"bounds": figures, "bound_violations": violations, "lookups": lookups, "via": via}


def run(args: argparse.Namespace, service: CacheService | None = None) -> dict[str, object]:
    """Every bound over every dataset; the figures and `bound_violations`. Through the cache
    service (`service`, by default the real process) unless args.in_process. Callable from
    benchmarks/cache_quality.py."""
    spaces = held_back(args)
    if args.in_process:
        tallies, points = in_process(spaces, args)
        return report(spaces, tallies, points, args.audit_rate, "in-process")
    tallies, points = via_service(spaces, args.audit_rate, service or cache_process())
    return report(spaces, tallies, points, args.audit_rate, "through the service")


def bound_violations(data: Path = DEFAULT_DATA, service: CacheService | None = None) -> int:
    """For benchmarks/cache_quality.py: the count of bounds whose served wrong rate exceeded
    the bound, through `service` (the real process by default), with this benchmark's default
    sizes; prints its table and JSON line first."""
    figures = run(parse_args(["--data", str(data)]), service)
    print(f"error-bound replay: {json.dumps(figures, sort_keys=True)}")
    return int(str(figures["bound_violations"]))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--embed-cache", default=None, help=".npz file to keep vectors in")
    parser.add_argument("--audit-rate", type=float, default=0.1, help="share of hits audited")
    parser.add_argument(
        "--in-process", action="store_true", help="SemanticCache in this process, not the service"
    )
    parser.add_argument("--qqp-pairs", type=int, default=5000)
    parser.add_argument("--clinc-queries", type=int, default=2000)
    parser.add_argument("--refs-per-intent", type=int, default=10)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    figures = run(parse_args(argv))
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()

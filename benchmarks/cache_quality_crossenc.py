"""The guarded verifier (vetoes, then the cross-encoder) replayed on the cache-quality data.

    python -m benchmarks.cache_quality_crossenc [--data ../shared/data] [--embed-cache F.npz]
        [--model services/cache/verifier_crossenc.onnx]

Every candidate pair the cache's lookup loop (services/cache/verifiers/replay.py) would show a
verifier, at the lowest cosine floor swept, is read by the vetoes (verifiers/vetoes.py) and,
when no veto names it, scored once by the cross-encoder file. Then the loop is replayed for
each (floor, bar) on the look-alike set and the QQP, BANKING77, CLINC150 and GPTCache
workloads. Operating points are chosen on the FIT halves only:

- default: the most look-alike paraphrases served with at most TARGET_LOOKALIKE of the
  look-alikes served (what SLUICE_CACHE_VERIFY=guarded ships with);
- pooled: the most pooled hits with at most TARGET_POOLED wrong (a tenant's stricter bar);

and reported on the held-back halves, with a by-kind table and, beside them, the rule verifier
at cosine 0.90 (the old default), the vetoes alone and the cross-encoder alone. Prints one
final JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from benchmarks.cache_quality_data import Workloads, load_workloads
from benchmarks.cache_quality_lookalike import by_kind_table
from benchmarks.common import DEFAULT_DATA, markdown_table, percent
from benchmarks.lookalike_gen import as_spaces, load_pairs
from benchmarks.lookalike_train import embed_atomic
from services.cache.verifiers.crossenc import DEFAULT_CROSSENC_PATH, CrossEncoder
from services.cache.verifiers.replay import Outcome, Score, Vectors, score, simulate
from services.cache.verifiers.rules import RuleVerifier
from services.cache.verifiers.train_crossenc import set_metadata
from services.cache.verifiers.vetoes import Reading, reading_vetoes
from services.cache.verify import ACCEPT, Pair, Verdict

FLOORS = (0.5, 0.6, 0.7, 0.8)
BARS = (*(round(0.1 * i, 1) for i in range(10)), 0.95, 0.98)
TARGET_LOOKALIKE = 0.015  # on the fit half, under the 2% goal to leave room for held-back
TARGET_POOLED = 0.015
TARGET_PARAPHRASES = 0.75  # on the fit half, over the 70% goal
Key = tuple[str, str]


class _Collect:
    """Rejects every candidate and keeps it: every pair some lookup would show a verifier."""

    def __init__(self) -> None:
        self.pairs: set[Key] = set()

    def verify(self, pair: Pair) -> Verdict:
        self.pairs.add((pair.query, pair.candidate))
        return Verdict(False, "collecting")


class Replayed:
    """The guarded or banded verifier on precomputed vetoes and scores: the vetoes, then the
    model's score at `bar` below `band_top` (bar None: the vetoes alone)."""

    def __init__(
        self,
        vetoes: Mapping[Key, str],
        scores: Mapping[Key, float],
        bar: float | None,
        band_top: float = math.inf,
        reason: str = "crossenc",
    ):
        self._vetoes, self._scores, self._bar = vetoes, scores, bar
        self._band_top, self._reason = band_top, reason

    def verify(self, pair: Pair) -> Verdict:
        key = (pair.query, pair.candidate)
        if pair.query == pair.candidate:
            return ACCEPT
        if self._vetoes[key]:
            return Verdict(False, self._vetoes[key], vetoed=True)
        if self._bar is None or pair.similarity >= self._band_top:
            return ACCEPT
        return ACCEPT if self._scores[key] >= self._bar else Verdict(False, self._reason)


def _figures(outcomes: Mapping[str, Sequence[Outcome]], fit: bool) -> dict[str, float]:
    scores = score(outcomes, fit=fit)
    look, pooled = scores.get("lookalike", Score()), scores.get("overall", Score())
    return {
        "lookalike_served": look.false_hits / max(1, look.must_miss),
        "paraphrases_served": look.served_right / max(1, look.should_hit),
        "pooled_hits": pooled.served_right / max(1, pooled.should_hit),
        "pooled_wrong": pooled.wrong_hits / max(1, pooled.hits),
    }


def _cached_scores(cache: Path | None, model: CrossEncoder) -> dict[Key, float]:
    """Scores a run with the same model file kept (--scores), so a rerun skips the model."""
    if cache is None or not cache.exists():
        return {}
    data = json.loads(cache.read_text(encoding="utf-8"))
    if data.get("digest") != model.info.digest:
        return {}
    return {(q, c): p for q, c, p in data["scores"]}


def pairs_and_scores(
    workloads: Workloads,
    vectors: Vectors,
    model: CrossEncoder,
    cache: Path | None,
    floor: float = min(FLOORS),
) -> tuple[dict[Key, str], dict[Key, float]]:
    """Every pair a lookup would show a verifier at or above `floor`: its first veto (or ""),
    and the model's score of each pair no veto names (--scores keeps them between runs)."""
    collect = _Collect()
    for spaces in workloads.values():
        simulate(spaces, vectors, collect, floor)
    readings: dict[str, Reading] = {}

    def reading(text: str) -> Reading:
        return readings.setdefault(text, Reading(text))

    vetoes = {}
    for q, c in sorted(collect.pairs):
        found = reading_vetoes(reading(q), reading(c))
        vetoes[(q, c)] = found[0] if found else ""
    todo = sorted(k for k, v in vetoes.items() if not v)  # a vetoed pair is never scored
    started = time.monotonic()
    scores = _cached_scores(cache, model)
    todo = [k for k in todo if k not in scores]
    for start in range(0, len(todo), 32):
        batch = todo[start : start + 32]
        scores.update(zip(batch, model.scores(batch).tolist(), strict=True))
    if cache is not None and todo:
        dump = [[q, c, p] for (q, c), p in sorted(scores.items())]
        cache.write_text(json.dumps({"digest": model.info.digest, "scores": dump}), "utf-8")
    vetoed = sum(bool(v) for v in vetoes.values())
    print(f"{len(todo)} pairs, {vetoed} vetoed, scored in {time.monotonic() - started:.0f}s",
          file=sys.stderr)  # fmt: skip
    return vetoes, scores


def _replay(
    workloads: Workloads, vectors: Vectors, verifier: object, floor: float
) -> dict[str, list[Outcome]]:
    return {n: simulate(s, vectors, verifier, floor) for n, s in workloads.items()}  # type: ignore[arg-type]


def _sweep(
    workloads: Workloads, vectors: Vectors, make: Callable[[float], object]
) -> list[tuple[float, float, dict[str, float], dict[str, float]]]:
    """(floor, bar, fit figures, held-back figures) for every floor and bar."""
    points = []
    for floor in FLOORS:
        for bar in BARS:
            outcomes = _replay(workloads, vectors, make(bar), floor)
            fit, held = _figures(outcomes, True), _figures(outcomes, False)
            points.append((floor, bar, fit, held))
            print(floor, bar, {k: round(v, 3) for k, v in fit.items()}, file=sys.stderr)
    return points


def _choose(
    points: Sequence[tuple[float, float, dict[str, float], dict[str, float]]],
) -> dict[str, tuple[float, float, dict[str, float], dict[str, float]] | None]:
    """The two operating points, on fit figures only."""
    safe = [p for p in points if p[2]["lookalike_served"] <= TARGET_LOOKALIKE]
    # The default must also keep the paraphrase goal with room to spare; among those points,
    # the fewest wrong pooled answers, since a default serves every kind of traffic.
    enough = [p for p in safe if p[2]["paraphrases_served"] >= TARGET_PARAPHRASES]
    default = min(
        enough, key=lambda p: (p[2]["pooled_wrong"], -p[2]["paraphrases_served"]), default=None
    )
    if default is None:
        default = max(safe, key=lambda p: (p[2]["paraphrases_served"], p[0], p[1]), default=None)
    pooled = [p for p in points if p[2]["pooled_wrong"] <= TARGET_POOLED and p[2]["pooled_hits"]]
    # Ties: the higher floor (fewer candidates scored per lookup), then the higher bar.
    return {
        "default": default,
        "pooled": max(pooled, key=lambda p: (p[2]["pooled_hits"], p[0], p[1]), default=None),
    }


def _row(label: str, figures: Mapping[str, float]) -> list[str]:
    keys = ("lookalike_served", "paraphrases_served", "pooled_hits", "pooled_wrong")
    return [label, *(f"{100 * figures[k]:.1f}%" for k in keys)]


def _load(args: argparse.Namespace) -> tuple[Workloads, Vectors, list[object]]:
    workloads = {} if args.lookalike_only else load_workloads(Path(args.data), args)
    pairs = load_pairs()
    workloads["lookalike"] = as_spaces(pairs)
    texts = {t for spaces in workloads.values() for s in spaces for t in s.entries}
    texts |= {p.text for spaces in workloads.values() for s in spaces for p in s.probes}
    vectors = embed_atomic(sorted(texts), Path(args.embed_cache) if args.embed_cache else None)
    return workloads, vectors, list(pairs)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--embed-cache", default=None)
    parser.add_argument("--model", default=str(DEFAULT_CROSSENC_PATH))
    parser.add_argument("--qqp-pairs", type=int, default=5000)
    parser.add_argument("--clinc-queries", type=int, default=2000)
    parser.add_argument("--refs-per-intent", type=int, default=10)
    parser.add_argument("--scores", default=None, help="JSON file to keep the model's scores in")
    parser.add_argument("--lookalike-only", action="store_true", help="no pooled figures")
    parser.add_argument("--write", action="store_true",
                        help="write the default point into the model file's metadata")  # fmt: skip
    args = parser.parse_args(argv)
    workloads, vectors, pairs = _load(args)
    model = CrossEncoder(Path(args.model))
    scores_cache = Path(args.scores) if args.scores else None
    vetoes, scores = pairs_and_scores(workloads, vectors, model, scores_cache)
    guarded = _sweep(workloads, vectors, lambda bar: Replayed(vetoes, scores, bar))
    chosen = _choose(guarded)
    rows = []
    for label, verifier, floor in (
        ("rules, cos >= 0.90 (old default)", RuleVerifier(), 0.90),
        ("vetoes alone, cos >= 0.90", Replayed(vetoes, scores, 0.0), 0.90),
    ):
        rows.append(_row(label, _figures(_replay(workloads, vectors, verifier, floor), False)))
    summary: dict[str, object] = {
        "model": args.model,
        "model_bytes": Path(args.model).stat().st_size,
    }
    for name, point in chosen.items():
        if point is None:
            rows.append([f"guarded, {name}: no fit point reaches its target", "", "", "", ""])
            continue
        floor, bar, fit, held = point
        rows.append(_row(f"guarded, {name} (cos >= {floor}, p >= {bar}), fit", fit))
        rows.append(_row(f"guarded, {name} (cos >= {floor}, p >= {bar}), held back", held))
        summary[name] = {"floor": floor, "bar": bar, "fit": fit, "held": held}
    headers = [
        "verifier",
        "look-alikes served",
        "paraphrases served",
        "pooled hits",
        "pooled wrong",
    ]
    print(markdown_table(headers, rows))
    default = chosen["default"]
    if default is not None:
        outcomes = _replay(workloads, vectors, Replayed(vetoes, scores, default[1]), default[0])
        print(by_kind_table(pairs, outcomes["lookalike"]))  # type: ignore[arg-type]
        gpt = score(outcomes, fit=False).get("mock", Score())  # GPTCache's mock paraphrases
        print(
            f"GPTCache paraphrases served (held back): {percent(gpt.served_right, gpt.should_hit)}"
        )
    if args.write and default is not None and not args.lookalike_only:
        set_metadata(Path(args.model), {"guarded_threshold": str(default[1]),
                                        "guarded_min_similarity": str(default[0])})  # fmt: skip
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()

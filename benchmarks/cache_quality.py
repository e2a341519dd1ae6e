"""Semantic-cache quality: how often a lookup is served a wrong answer, and how often a true
paraphrase is served at all, on QQP, BANKING77, CLINC150 and GPTCache's paraphrases.

    python -m benchmarks.cache_quality [--data ../shared/data] [--verify crossenc]
    python -m benchmarks.cache_quality --train     # refit services/cache/verifier_model.json

Split into cache_quality_data.py (the workloads) and cache_quality_methods.py (sweeps,
training, operating points, ablation); this file is the command and the service runs.

Headline numbers come through the real service: `python -m services.cache` on a free loopback
port, Store and Lookup over gRPC, one namespace per QQP pair (its own tenant) and one per intent
dataset, the verifier chosen with SLUICE_CACHE_VERIFY. The ablation replays the same lookups
in-process on the same MiniLM vectors (top 8 neighbours above the threshold, best first, first
accepted served: the service's own loop), which also checks that the service agrees with it.
Everything is fitted on the hash-chosen fit half and reported on the held-back half.

The service runs also replay the look-alike set (benchmarks/data/lookalike, one namespace per
pair; cache_quality_lookalike.py), and the final JSON line carries issue 16's fields:
`lookalike_wrong_rate`, `lookalike_paraphrase_hit_rate`, `hit_rate_at_2pct_wrong` (pooled
QQP + BANKING77 + CLINC150), `long_prompt_wrong_hits` and `bound_violations`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.cache_quality_data import Workloads, extra_qqp, load_workloads
from benchmarks.cache_quality_lookalike import ISSUE16_HOOKS, by_kind_table, summary_fields
from benchmarks.cache_quality_lookalike import NAME as LOOKALIKE
from benchmarks.cache_quality_lookalike import workload as lookalike_workload
from benchmarks.cache_quality_methods import (
    RULES_ALONE_AT,
    TARGET_HITS,
    Row,
    Sweeps,
    ablation,
    extra_pairs,
    learned_sweep,
    method_sweeps,
    operating_points,
    per_namespace_table,
    train,
)
from benchmarks.common import (
    DEFAULT_DATA,
    REPO,
    TABLE_HEADERS,
    agreement,
    embed,
    markdown_table,
    percent,
    raise_threshold,
    table_row,
    through_service,
    workload_sizes,
)
from services.cache.verifiers import VERIFIERS, CrossEncoder, CrossEncoderVerifier, load_model
from services.cache.verifiers.crossenc import DEFAULT_CROSSENC_PATH
from services.cache.verifiers.learned import DEFAULT_MODEL_PATH, LearnedVerifier
from services.cache.verifiers.pair_model import PairModel
from services.cache.verifiers.replay import (
    Outcome,
    SweepPoint,
    Vectors,
    recall_point,
    score,
    simulate,
)
from services.cache.verifiers.rules import RuleVerifier
from services.cache.verifiers.train_pair import DEFAULT_UNITS
from services.cache.verify import AcceptAll, HitVerifier

# --- the command ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder")
    parser.add_argument(
        "--verify",
        choices=VERIFIERS,
        default="crossenc",
        help="verifier for the headline service run (SLUICE_CACHE_VERIFY)",
    )
    parser.add_argument(
        "--operating-point",
        choices=("shipped", "hits"),
        default="shipped",
        help="headline threshold: the model file's own (<= 1%% wrong on the fit half), or "
        "the fit half's >= 60%%-hit point",
    )
    parser.add_argument("--train", action="store_true", help="refit the learned model first")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH))
    parser.add_argument("--crossenc-model", default=str(DEFAULT_CROSSENC_PATH))
    parser.add_argument(
        "--min-similarity",
        type=float,
        default=0.75,
        help="cosine pre-filter the learned model is trained behind (--train)",
    )
    parser.add_argument("--no-service", action="store_true", help="in-process numbers only")
    parser.add_argument(
        "--headline-only",
        action="store_true",
        help="skip the pair model's sweeps and ablation (crossenc, learned or none)",
    )
    parser.add_argument("--service-repo", default=str(REPO), help="tree to run the service from")
    parser.add_argument("--embed-cache", default=None, help=".npz file to keep vectors in")
    parser.add_argument("--log-dir", default=None, help="service logs (default: a temp dir)")
    parser.add_argument("--qqp-pairs", type=int, default=5000)
    # Default 0: 10,000 extra rows did not move the held-back figures at either end of the
    # goal (the "More pairs" experiment), so the shipped model is refitted from the benchmark.
    parser.add_argument(
        "--extra-qqp-pairs",
        type=int,
        default=0,
        help="training-only QQP rows beyond --qqp-pairs (fit half, no evaluated text)",
    )
    parser.add_argument("--units", type=int, default=DEFAULT_UNITS, help="hidden units (--train)")
    parser.add_argument("--clinc-queries", type=int, default=2000)
    parser.add_argument("--refs-per-intent", type=int, default=10)
    return parser.parse_args(argv)  # fmt: skip


def service_rows(
    workloads: Workloads, vectors: Vectors, serving: tuple[HitVerifier, float, str], args: Any
) -> tuple[list[Row], str, list[Outcome]]:
    """Baselines and the chosen verifier through the service, checked against the replay.

    serving: (the verifier as the service should build it, its cosine pre-filter, a label).
    Returns the rows, where the last (headline) row came from, and the headline's look-alike
    outcomes (one per pair, in the file's order)."""
    baseline = through_service(workloads, "none", 0.80, args)
    rows: list[Row] = [
        ("bare cosine >= 0.80", "service", score(baseline)),
        # Unverified, the best candidate is served, so a 0.95 cache is the 0.80 run with the
        # hits below 0.95 turned into misses: exactly what a second run would give.
        ("bare cosine >= 0.95", "service", score(raise_threshold(baseline, 0.95))),
    ]
    if args.verify == "none":
        return rows, "service", baseline.get(LOOKALIKE, [])
    verifier, threshold, label = serving
    model_env = {
        "SLUICE_CACHE_VERIFIER_MODEL": str(Path(args.log_dir) / "verifier_model.json"),
        "SLUICE_CACHE_CROSSENC_MODEL": str(Path(args.crossenc_model).resolve()),
    }
    served = through_service(workloads, args.verify, threshold, args, model_env)
    replayed = {n: simulate(s, vectors, verifier, threshold) for n, s in workloads.items()}
    unverified = {n: simulate(s, vectors, AcceptAll(), threshold) for n, s in workloads.items()}
    agree, agree_unverified = agreement(served, replayed), agreement(served, unverified)
    print(f"service vs replay, verify={args.verify}: {agree:.2%} same answers "
          f"({agree_unverified:.2%} against the unverified replay)", file=sys.stderr)  # fmt: skip
    if agree < 0.99 and agree_unverified > agree:
        print(f"WARNING: the service ignored SLUICE_CACHE_VERIFY={args.verify} (not wired yet); "
              "the headline comes from the in-process replay", file=sys.stderr)  # fmt: skip
        rows.append((f"{args.verify}: service without the verifier", "service", score(served)))
        rows.append((label, "in-process", score(replayed)))
        return rows, "in-process", replayed.get(LOOKALIKE, [])
    rows.append((label, "service", score(served)))
    return rows, "service", served.get(LOOKALIKE, [])


def serving_config(
    model: PairModel, sweeps: Sweeps, args: argparse.Namespace
) -> tuple[HitVerifier, float, str]:
    """The headline verifier at the chosen operating point; writes the model file it uses."""
    goal = "shipped threshold"
    if args.verify == "crossenc":
        crossenc = CrossEncoder(Path(args.crossenc_model))
        floor, bar = crossenc.info.min_similarity, crossenc.info.threshold
        label = f"cross-encoder, shipped threshold (cos >= {floor}, p >= {bar})"
        return CrossEncoderVerifier(crossenc), floor, label
    if args.verify == "rules":
        point = recall_point(sweeps["rules"][0], TARGET_HITS)
        at = point.param if args.operating_point == "hits" and point else RULES_ALONE_AT
        return RuleVerifier(), at, f"rules verification (cos >= {at})"
    if args.operating_point == "hits":
        point = recall_point(sweeps["learned, pair model"][0], TARGET_HITS)
        if point is not None:
            model, goal = replace(model, threshold=point.param), ">= 60% hit on fit"
    model.save(Path(args.log_dir) / "verifier_model.json")
    label = f"pair model, {goal} (cos >= {model.min_similarity}, p >= {model.threshold})"
    return LearnedVerifier(model), model.min_similarity, label


def sweep_table(points: Sequence[SweepPoint]) -> str:
    """One column per threshold: pooled hit and wrong rates on the held-back half."""
    held = [point.held["overall"] for point in points]
    return markdown_table(
        ["p >=", *(str(point.param) for point in points)],
        [
            ["hit", *(percent(s.served_right, s.should_hit) for s in held)],
            [
                "wrong",
                *(f"{percent(s.wrong_hits, s.hits)} ({s.wrong_hits}/{s.hits})" for s in held),
            ],
        ],
    )


def _load_pair_model(path: Path) -> PairModel:
    model = load_model(path)
    if not isinstance(model, PairModel):
        raise SystemExit(f"{path} is not a pair model; refit it with --train")
    return model


def analysis(
    workloads: Workloads, vectors: Vectors, model: PairModel, sweeps: Sweeps, extra: Any
) -> None:
    """The in-process tables of the pair model and the other methods (held-back half)."""
    print("\n## The shipped model's threshold sweep (in-process, held-back half)\n")
    print(sweep_table(learned_sweep(workloads, vectors, model)))
    print("\n## Per-namespace thresholds for <= 1% wrong (in-process, held-back half)\n")
    print(per_namespace_table(sweeps))
    print("\n## Ablation (in-process, held-back half)\n")
    rows = ablation(workloads, vectors, model, sweeps["learned, pair model"][0], extra)
    print(markdown_table(TABLE_HEADERS, [table_row(*row) for row in rows]))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    args.log_dir = args.log_dir or tempfile.mkdtemp(prefix="sluice-cache-quality-")
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    workloads = load_workloads(Path(args.data), args)
    look_pairs, look_spaces = lookalike_workload()
    # The look-alike set goes through the headline runs only: the pair model's sweeps and
    # ablation keep the workloads their README figures were measured on.
    with_lookalike = {**workloads, LOOKALIKE: look_spaces}
    print(workload_sizes(with_lookalike))
    extra_spaces = extra_qqp(Path(args.data), workloads, args.qqp_pairs, args.extra_qqp_pairs)
    texts = {t for spaces in with_lookalike.values() for s in spaces for t in s.entries}
    texts |= {p.text for spaces in with_lookalike.values() for s in spaces for p in s.probes}
    texts |= {t for s in extra_spaces for t in (*s.entries, *(p.text for p in s.probes))}
    vectors = embed(sorted(texts), Path(args.embed_cache) if args.embed_cache else None)
    extra = extra_pairs(extra_spaces, vectors, args.min_similarity)
    print(f"extra QQP rows {len(extra_spaces)}, candidate pairs {len(extra)}", file=sys.stderr)
    model = (
        train(workloads, vectors, args, extra) if args.train else _load_pair_model(Path(args.model))
    )
    quick = args.headline_only and args.verify in ("crossenc", "none", "learned")
    sweeps = {} if quick else method_sweeps(workloads, vectors, model, extra)
    points = [] if quick else operating_points(workloads, vectors, model, sweeps)
    serving = serving_config(model, sweeps, args)
    if args.no_service:
        verifier, threshold, label = serving
        replayed = {n: simulate(s, vectors, verifier, threshold) for n, s in with_lookalike.items()}
        headline, source = [(label, "in-process", score(replayed))], "in-process"
        look_outcomes = replayed[LOOKALIKE]
    else:
        headline, source, look_outcomes = service_rows(with_lookalike, vectors, serving, args)
    print("\n## Results (held-back half)\n")
    print(markdown_table(TABLE_HEADERS, [table_row(*row) for row in [*headline, *points]]))
    print(f"\n## Look-alikes by kind, {headline[-1][0]} ({source}, held-back half)\n")
    print(by_kind_table(look_pairs, look_outcomes))
    if not quick:
        analysis(workloads, vectors, model, sweeps, extra)
    final = (headline or points)[-1][2]
    summary = {
        **summary_fields(final[LOOKALIKE], final["overall"], args, ISSUE16_HOOKS),
        "wrong_hit_rate": final["overall"].as_json()["wrong_hit_rate"],
        "duplicate_hit_rate": final["overall"].as_json()["duplicate_hit_rate"],
        "headline": (headline or points)[-1][0],
        "source": source,
        "datasets": {name: s.as_json() for name, s in final.items()},
        "baselines": {
            label: s["overall"].as_json() for label, via, s in headline if label.startswith("bare")
        },
    }
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()

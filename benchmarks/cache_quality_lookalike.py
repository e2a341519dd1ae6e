"""The look-alike part of the cache-quality benchmark: the workload (one namespace per pair of
benchmarks/data/lookalike/pairs.jsonl), its held-back figures overall and by kind, and the
issue-16 summary fields of the final JSON line.

`long_prompt_wrong_hits` and `bound_violations` come from the other two issue-16 suites, each
run through its own fresh cache service (`issue16_hooks`): the long-prompt suite
(cache_long_prompts.py, the service's default settings) and the per-entry error-bound replay
(cache_bound.py, bounds 0.5%, 1%, 2% and 5%). A hook returns None only when the run was asked
to skip the suites (`--skip-suites`); None is printed as null, never as a number nobody
measured.

`hit_rate_at_2pct_wrong` is the pooled QQP + BANKING77 + CLINC150 hit rate of one operating
point of the headline configuration: its cosine floor swept (`at_2pct_wrong`), the point with
the most right hits on the fit half among those with at most 2% of their hits wrong there, and
its figures on the held-back half.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.cache_bound import bound_violations
from benchmarks.cache_long_prompts import long_prompt_wrong_hits
from benchmarks.cache_service import CacheService, cache_process
from benchmarks.common import markdown_table, percent
from benchmarks.lookalike_gen import LookalikePair, as_spaces, load_pairs
from services.cache.verifiers.perturb_tables import KINDS
from services.cache.verifiers.replay import Outcome, Score, Space, SweepPoint, precision_point

NAME = "lookalike"
TARGET_SERVED = 0.02  # at most this share of must-miss pairs served
TARGET_PARAPHRASES = 0.70  # at least this share of must-hit pairs served
TARGET_POOLED_WRONG = 0.02


def workload() -> tuple[list[LookalikePair], list[Space]]:
    pairs = load_pairs()
    return pairs, as_spaces(pairs)


def held_score(outcomes: Sequence[Outcome]) -> Score:
    total = Score()
    for outcome in outcomes:
        if not outcome.probe.fit:
            total.add(outcome)
    return total


def figures(score: Score) -> dict[str, float | None]:
    return {
        "lookalike_wrong_rate": round(score.false_hits / score.must_miss, 4)
        if score.must_miss
        else None,
        "lookalike_paraphrase_hit_rate": round(score.served_right / score.should_hit, 4)
        if score.should_hit
        else None,
    }


def by_kind_table(pairs: Sequence[LookalikePair], outcomes: Sequence[Outcome]) -> str:
    """Held-back half: per kind, look-alikes served and paraphrases served."""
    served: Counter[tuple[str, str]] = Counter()
    total: Counter[tuple[str, str]] = Counter()
    for pair, outcome in zip(pairs, outcomes, strict=True):
        if pair.half != "held":
            continue
        total[(pair.kind, pair.label)] += 1
        served[(pair.kind, pair.label)] += outcome.served is not None
    rows = [
        [
            kind,
            f"{percent(served[(kind, 'must_miss')], total[(kind, 'must_miss')])} "
            f"({served[(kind, 'must_miss')]}/{total[(kind, 'must_miss')]})",
            f"{percent(served[(kind, 'must_hit')], total[(kind, 'must_hit')])} "
            f"({served[(kind, 'must_hit')]}/{total[(kind, 'must_hit')]})",
        ]
        for kind in KINDS
    ]
    return markdown_table(["kind", "look-alikes served", "paraphrases served"], rows)


Hook = Callable[[Any], int | None]


def pooled(overall: Score) -> dict[str, float]:
    """The pooled QQP + BANKING77 + CLINC150 held-back figures of the headline configuration."""
    wrong = overall.wrong_hits / overall.hits if overall.hits else 0.0
    hits = overall.served_right / overall.should_hit if overall.should_hit else 0.0
    return {"pooled_hit_rate": round(hits, 4), "pooled_wrong_rate": round(wrong, 4)}


def _rates(score: Score) -> dict[str, Any]:
    return {
        "hit_rate": round(score.served_right / score.should_hit, 4) if score.should_hit else None,
        "wrong_rate": round(score.wrong_hits / score.hits, 4) if score.hits else None,
        "wrong": f"{score.wrong_hits}/{score.hits}",
    }


def _wrong(score: Score) -> float:
    return score.wrong_hits / score.hits if score.hits else 0.0


def floor_table(points: Sequence[SweepPoint]) -> str:
    """Per cosine floor, pooled: hit and wrong rates on the fit half and on the held-back half."""
    rows = []
    for point in points:
        fit, held = point.fit.get("overall", Score()), point.held.get("overall", Score())
        rows.append([f"{point.param}", *(f"{percent(s.served_right, s.should_hit)} / "
                     f"{percent(s.wrong_hits, s.hits)} ({s.wrong_hits}/{s.hits})"
                     for s in (fit, held))])  # fmt: skip
    return markdown_table(["cos >=", "fit: hit / wrong", "held back: hit / wrong"], rows)


def at_2pct_wrong(points: Sequence[SweepPoint], via: str) -> dict[str, Any]:
    """`hit_rate_at_2pct_wrong` and how it was got: among `points` (one configuration's cosine
    floors), the one with the most right hits on the fit half whose fit-half hits are at most 2%
    wrong (replay.precision_point); its held-back hit rate, with its held-back wrong rate beside
    it (which may exceed 2%: the point is chosen without seeing that half). None when no point
    qualifies on the fit half; `closest` then names the floor with the lowest fit-half wrong
    rate among those that serve, to say by how much it missed."""
    point = precision_point(points, TARGET_POOLED_WRONG)
    if point is None:
        serving = [p for p in points if p.fit.get("overall", Score()).hits]
        closest = min(serving, key=lambda p: _wrong(p.fit["overall"]), default=None)
        missed: dict[str, Any] = {"chosen": None, "via": via}
        if closest is not None:
            missed["closest"] = {
                "floor": f"cos >= {closest.param}",
                "fit": _rates(closest.fit["overall"]),
                "held_back": _rates(closest.held.get("overall", Score())),
            }
        return {"hit_rate_at_2pct_wrong": None, "at_2pct_wrong": missed}
    held = point.held.get("overall", Score())
    return {
        "hit_rate_at_2pct_wrong": _rates(held)["hit_rate"],
        "at_2pct_wrong": {
            "chosen": f"cos >= {point.param}",
            "chosen_on": "fit half: most right hits with <= 2% of hits wrong",
            "fit": _rates(point.fit.get("overall", Score())),
            "held_back": _rates(held),
            "via": via,
        },
    }


def issue16_hooks(service: CacheService | None = None) -> dict[str, Hook]:
    """The two suites' counts, each through a fresh cache service: `service`, or by default
    `python -m services.cache` from args.service_repo with its log in args.log_dir."""

    def started(args: Any, name: str) -> CacheService:
        repo, logs = Path(args.service_repo), Path(args.log_dir)
        return service or cache_process(repo, logs, name)

    def long_prompts(args: Any) -> int | None:
        if args.skip_suites:
            return None
        return long_prompt_wrong_hits(Path(args.data), started(args, "cache-long-prompts"))

    def bounds(args: Any) -> int | None:
        if args.skip_suites:
            return None
        return bound_violations(Path(args.data), started(args, "cache-bound"))

    return {"long_prompt_wrong_hits": long_prompts, "bound_violations": bounds}


def summary_fields(
    lookalike: Score, overall: Score, args: Any, hooks: Mapping[str, Hook]
) -> dict[str, Any]:
    return {
        **figures(lookalike),
        **pooled(overall),
        **{name: hook(args) for name, hook in hooks.items()},
    }

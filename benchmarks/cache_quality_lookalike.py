"""The look-alike part of the cache-quality benchmark: the workload (one namespace per pair of
benchmarks/data/lookalike/pairs.jsonl), its held-back figures overall and by kind, and the
issue-16 summary fields of the final JSON line.

`long_prompt_wrong_hits` and `bound_violations` come from other parts of issue 16 (the
long-prompt suite and the per-entry error-bound replay): `ISSUE16_HOOKS` names a function for
each, which returns None until that work plugs its measurement in here. None is printed as
null, never as a number nobody measured.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from benchmarks.common import markdown_table, percent
from benchmarks.lookalike_gen import LookalikePair, as_spaces, load_pairs
from services.cache.verifiers.perturb_tables import KINDS
from services.cache.verifiers.replay import Outcome, Score, Space

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


def pooled(overall: Score) -> dict[str, float | None]:
    """The pooled QQP + BANKING77 + CLINC150 held-back figures of the headline configuration;
    `hit_rate_at_2pct_wrong` is its hit rate when at most 2% of its hits are wrong, else None
    (the two rates beside it say by how much it missed)."""
    wrong = overall.wrong_hits / overall.hits if overall.hits else 0.0
    hits = overall.served_right / overall.should_hit if overall.should_hit else 0.0
    return {
        "hit_rate_at_2pct_wrong": round(hits, 4) if wrong <= TARGET_POOLED_WRONG else None,
        "pooled_hit_rate": round(hits, 4),
        "pooled_wrong_rate": round(wrong, 4),
    }


def _long_prompt_wrong_hits(args: Any) -> int | None:
    return None  # issue 16, long-prompt suite: not plugged in yet


def _bound_violations(args: Any) -> int | None:
    return None  # issue 16, per-entry error-bound replay: not plugged in yet


ISSUE16_HOOKS: Mapping[str, Callable[[Any], int | None]] = {
    "long_prompt_wrong_hits": _long_prompt_wrong_hits,
    "bound_violations": _bound_violations,
}


def summary_fields(
    lookalike: Score, overall: Score, args: Any, hooks: Mapping[str, Callable[[Any], int | None]]
) -> dict[str, Any]:
    return {
        **figures(lookalike),
        **pooled(overall),
        **{name: hook(args) for name, hook in hooks.items()},
    }

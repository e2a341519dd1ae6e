"""How many of the cache's "wrong" QQP hits are wrong answers: a read of sampled pairs.

    .venv/bin/python -m benchmarks.qqp_label_audit [--data ../shared/data] [--embed-cache F]

The cache-quality benchmark counts a hit on a QQP pair labelled non-duplicate as a wrong
answer. QQP's labels are a few percent wrong overall, and more so among near-identical
wordings, which are exactly the pairs a semantic cache serves. This draws the pairs the cache
would serve on QQP's fit half (first ROWS rows in the benchmark's hash order, cosine >= 0.90
with the service's MiniLM, no veto), takes SAMPLE of those labelled non-duplicate with a fixed
seed, and checks them against the readings stored in benchmarks/data/qqp_label_audit (one
person's reading of each pair: would the stored question's answer answer the asked one?). It
prints the counts and the QQP wrong share the readings imply; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

from benchmarks.cache_quality_data import qqp_rows
from benchmarks.common import DEFAULT_DATA, embed, is_fit
from services.cache.verifiers.vetoes import Reading, reading_vetoes

READINGS = Path(__file__).parent / "data" / "qqp_label_audit" / "readings.jsonl"
ROWS = 6000
SAMPLE = 40
SEED = 7
FLOOR = 0.90
SAME, DIFFERENT, AMBIGUOUS = "same question", "different question", "ambiguous"


def served_pairs(data: Path, embed_cache: Path | None) -> list[tuple[str, str, int, float]]:
    """(stored, asked, label, cosine) of the fit-half pairs the cache would serve."""
    rows = [(str(r["text_a"]), str(r["text_b"]), int(str(r["label"]))) for r in qqp_rows(data)]
    fit = [(a, b, label) for a, b, label in rows[:ROWS] if is_fit(f"{a}\n{b}")]
    vectors = embed(sorted({t for a, b, _ in fit for t in (a, b)}), embed_cache)
    served = []
    for a, b, label in fit:
        cosine = round(float(vectors[a] @ vectors[b]), 3)
        if cosine >= FLOOR and not reading_vetoes(Reading(b), Reading(a)):
            served.append((a, b, label, cosine))
    return served


def read_readings(path: Path = READINGS) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's 95% score interval for a proportion."""
    share = successes / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def perfect_verifier_floor(
    labelled_duplicates: int, labelled_wrong: int, counts: dict[str, int]
) -> tuple[float, float, float]:
    """The wrong share QQP's labels would charge a verifier that served the labelled
    duplicates and exactly the pairs read as the same question: (estimate, low, high)."""
    read = sum(counts.values())

    def charged(same_share: float) -> float:
        same = same_share * labelled_wrong
        return same / (labelled_duplicates + same)

    low, high = wilson(counts[SAME], read)
    return charged(counts[SAME] / read), charged(low), charged(high)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--embed-cache", type=Path, default=None)
    args = parser.parse_args(argv)
    served = served_pairs(args.data, args.embed_cache)
    labelled_wrong = [(a, b, cos) for a, b, label, cos in served if label != 1]
    random.seed(SEED)
    sample = random.sample(labelled_wrong, SAMPLE)
    readings = read_readings()
    drawn = [(a, b) for a, b, _ in sample]
    stored = [(str(r["stored"]), str(r["asked"])) for r in readings]
    if drawn != stored:
        for (a, b), cosine in zip(drawn, (c for _, _, c in sample), strict=True):
            print(json.dumps({"stored": a, "asked": b, "cosine": cosine}, ensure_ascii=False))
        raise SystemExit(f"{READINGS} does not hold this sample (above): read these pairs")
    counts = {
        kind: sum(r["reading"] == kind for r in readings) for kind in (SAME, DIFFERENT, AMBIGUOUS)
    }
    labelled_share = len(labelled_wrong) / len(served)
    low = labelled_share * counts[DIFFERENT] / SAMPLE
    high = labelled_share * (counts[DIFFERENT] + counts[AMBIGUOUS]) / SAMPLE
    print(f"served on QQP's fit half at cos >= {FLOOR} with the vetoes: {len(served)} pairs")
    print(f"labelled non-duplicate: {len(labelled_wrong)} ({labelled_share:.1%})")
    print(
        f"read {SAMPLE} of them: {counts[SAME]} same question, {counts[DIFFERENT]} different, "
        f"{counts[AMBIGUOUS]} ambiguous"
    )
    print(f"wrong answers those readings imply: {low:.1%} to {high:.1%} of served QQP hits")
    summary: dict[str, object] = {
        "qqp_served": len(served),
        "qqp_labelled_wrong_share": round(labelled_share, 4),
        "read": SAMPLE,
        **{kind.replace(" ", "_"): n for kind, n in counts.items()},
        "implied_wrong_share_low": round(low, 4),
        "implied_wrong_share_high": round(high, 4),
    }
    floor = perfect_verifier_floor(len(served) - len(labelled_wrong), len(labelled_wrong), counts)
    print(
        "a verifier serving exactly the same-question pairs would still be counted wrong on "
        f"{floor[0]:.1%} of its QQP hits (95% interval {floor[1]:.1%} to {floor[2]:.1%})"
    )
    summary["perfect_verifier_qqp_wrong"] = [round(x, 4) for x in floor]
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How the default verifier's band was chosen (SLUICE_CACHE_VERIFY=banded, issue 16 item 5).

    python -m benchmarks.cache_quality_band [--data ../shared/data] [--embed-cache F.npz]
        [--scores S.json] [--held]

The vetoes alone at cosine 0.90 serve 66.4% of the look-alike set's held-back paraphrases,
short of the 70% goal. This replays the cache's lookup loop in-process
(services/cache/verifiers/replay.py, the service's own loop, on MiniLM vectors) for

- the vetoes alone at each floor of FLOORS, with where the paraphrases they miss are lost:
  under the floor, or to a veto (each such pair printed with the veto that named it);
- the `banded` verifier for every floor of FLOORS and bar of BARS: the vetoes at every cosine,
  and below BAND_TOP the shipped cross-encoder's probability at or above the bar too (every
  pair no veto names scored once, as cache_quality_crossenc.py does);

and reports, per point, on the FIT halves only: look-alikes served, paraphrases served, pooled
QQP + BANKING77 + CLINC150 hits and wrong share, GPTCache's paraphrases served, and the
long-prompt suite's question pairs served (L-Eval: with the question after the document only
the two questions are compared, cache_long_prompts.py; one pair per document, each counting
four times in the suite, once per length; the set has no halves, so all of it is a constraint).

The rule: at most 1% of look-alikes served, at least 70% of paraphrases, no long-prompt pair
served; among those points the lowest pooled wrong share, then the most pooled hits. `--held`
adds the chosen point's held-back figures, which play no part in the choice. Last line JSON.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.cache_long_prompts import documents
from benchmarks.cache_quality_crossenc import Key, Replayed, pairs_and_scores
from benchmarks.cache_quality_data import Workloads, load_workloads
from benchmarks.common import DEFAULT_DATA, markdown_table
from benchmarks.lookalike_gen import as_spaces, load_pairs
from benchmarks.lookalike_train import embed_atomic
from services.cache.verifiers.crossenc import DEFAULT_CROSSENC_PATH, CrossEncoder
from services.cache.verifiers.guarded import BAND_TOP
from services.cache.verifiers.replay import Outcome, Probe, Score, Space, Vectors, score, simulate
from services.cache.verifiers.vetoes import vetoes

FLOORS = (0.74, 0.76, 0.78, 0.8, 0.81, 0.82, 0.83, 0.84, 0.86, 0.88, 0.9)
BARS = (0.5, 0.55, 0.6, 0.625, 0.65, 0.675, 0.7, 0.75, 0.8)
MAX_LOOKALIKES = 0.01  # on the fit half, half the 2% goal
MIN_PARAPHRASES = 0.70
LONG = "long_prompts"


def banded_verifier(
    vetoes: Mapping[Key, str], scores: Mapping[Key, float], bar: float | None
) -> Replayed:
    """BandedVerifier on precomputed vetoes and scores; bar None: the vetoes alone."""
    return Replayed(vetoes, scores, bar, BAND_TOP, "crossenc_band")


@dataclass(frozen=True)
class Point:
    floor: float
    bar: float | None
    fit: dict[str, float]
    held: dict[str, float]

    @property
    def label(self) -> str:
        if self.bar is None:
            return f"vetoes alone, cos >= {self.floor}"
        return f"banded, cos >= {self.floor}, p >= {self.bar} below {BAND_TOP}"


def _figures(outcomes: Mapping[str, Sequence[Outcome]], fit: bool) -> dict[str, float]:
    scores = score(outcomes, fit=fit)
    look, pooled = scores.get("lookalike", Score()), scores.get("overall", Score())
    gpt = scores.get("mock", Score())
    return {
        "lookalike_served": look.false_hits / max(1, look.must_miss),
        "paraphrases_served": look.served_right / max(1, look.should_hit),
        "pooled_hits": pooled.served_right / max(1, pooled.should_hit),
        "pooled_wrong": pooled.wrong_hits / max(1, pooled.hits),
        "pooled_wrong_hits": pooled.wrong_hits,
        "gptcache_paraphrases": gpt.served_right / max(1, gpt.should_hit),
        # The suite has no halves: the same count on both sides.
        "long_prompt_pairs_served": sum(o.served is not None for o in outcomes[LONG]),
    }


def _point(workloads: Workloads, vectors: Vectors, verifier: Replayed, floor: float,
           bar: float | None) -> Point:  # fmt: skip
    outcomes = {n: simulate(s, vectors, verifier, floor) for n, s in workloads.items()}
    return Point(floor, bar, _figures(outcomes, True), _figures(outcomes, False))


def choose(points: Sequence[Point]) -> Point | None:
    """The rule of the module docstring, on fit figures only."""
    ok = [
        p
        for p in points
        if p.fit["lookalike_served"] <= MAX_LOOKALIKES
        and p.fit["paraphrases_served"] >= MIN_PARAPHRASES
        and p.fit["long_prompt_pairs_served"] == 0
    ]
    return min(ok, key=lambda p: (p.fit["pooled_wrong"], -p.fit["pooled_hits"]), default=None)


def losses(vectors: Vectors, floor: float) -> str:
    """Fit-half paraphrases the vetoes alone miss at `floor`: how many under it, and each one
    a veto turns away (at any cosine), with the veto."""
    below, vetoed = 0, []
    for pair in load_pairs():
        if pair.half != "fit" or pair.label != "must_hit" or pair.asked == pair.stored:
            continue
        cosine = float(vectors[pair.asked] @ vectors[pair.stored])
        veto = next(iter(vetoes(pair.asked, pair.stored)), "")
        below += cosine < floor and not veto
        if veto:
            vetoed.append(f"- {cosine:.3f} {veto} ({pair.kind}): {pair.stored!r} -> {pair.asked!r}")
    count = Counter(line.split()[2] for line in vetoed)
    head = (
        f"under cos {floor} (no veto): {below}; vetoed at any cosine: {len(vetoed)} {dict(count)}"
    )
    return "\n".join([head, *sorted(vetoed)])


def _load(args: argparse.Namespace) -> tuple[Workloads, Vectors]:
    workloads = load_workloads(Path(args.data), args)
    workloads["lookalike"] = as_spaces(load_pairs())
    docs = documents(Path(args.data), None)
    workloads[LONG] = [
        Space(f"long-{i}", {first: "first"}, [Probe(second, None, True)])
        for i, (_, first, second) in enumerate(docs)
    ]
    texts = {t for spaces in workloads.values() for s in spaces for t in s.entries}
    texts |= {p.text for spaces in workloads.values() for s in spaces for p in s.probes}
    vectors = embed_atomic(sorted(texts), Path(args.embed_cache) if args.embed_cache else None)
    return workloads, vectors


def _row(label: str, f: Mapping[str, float]) -> list[str]:
    return [
        label,
        f"{f['lookalike_served']:.1%}",
        f"{f['paraphrases_served']:.1%}",
        f"{f['pooled_hits']:.1%} / {f['pooled_wrong']:.1%}",
        f"{f['gptcache_paraphrases']:.1%}",
        str(int(f["long_prompt_pairs_served"])),
    ]


HEADERS = ["fit half", "look-alikes", "paraphrases", "pooled hit / wrong", "GPTCache", "long"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--embed-cache", default=None)
    parser.add_argument("--scores", default=None, help="JSON file to keep the model's scores in")
    parser.add_argument("--held", action="store_true", help="the chosen point's held-back half")
    parser.add_argument("--qqp-pairs", type=int, default=5000)
    parser.add_argument("--clinc-queries", type=int, default=2000)
    parser.add_argument("--refs-per-intent", type=int, default=10)
    args = parser.parse_args(argv)
    workloads, vectors = _load(args)
    model = CrossEncoder(DEFAULT_CROSSENC_PATH)
    scores_file = Path(args.scores) if args.scores else None
    named, scores = pairs_and_scores(workloads, vectors, model, scores_file, min(FLOORS))
    alone = [
        _point(workloads, vectors, banded_verifier(named, scores, None), f, None) for f in FLOORS
    ]
    banded = [
        _point(workloads, vectors, banded_verifier(named, scores, bar), floor, bar)
        for floor in FLOORS
        if floor < BAND_TOP
        for bar in BARS
    ]
    print(markdown_table(HEADERS, [_row(p.label, p.fit) for p in [*alone, *banded]]))
    print(f"\n{losses(vectors, BAND_TOP)}\n")
    chosen = choose([*alone, *banded])
    summary: dict[str, Any] = {"chosen": None, "model_digest": model.info.digest}
    if chosen is not None:
        print(f"chosen on the fit halves: {chosen.label}")
        summary |= {"chosen": chosen.label, "floor": chosen.floor, "bar": chosen.bar,
                    "fit": chosen.fit}  # fmt: skip
        if args.held:
            base = next(p for p in alone if p.floor == BAND_TOP)
            rows = [_row(f"{p.label}, held back", p.held) for p in (base, chosen)]
            print(markdown_table(["held back", *HEADERS[1:]], rows))
            summary["held"] = chosen.held
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()

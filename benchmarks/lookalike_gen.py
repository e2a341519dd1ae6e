"""Writes the look-alike set: benchmarks/data/lookalike/pairs.jsonl.

    python -m benchmarks.lookalike_gen [--data ../shared/data] [--out benchmarks/data/lookalike]

Each line is one pair: a stored question and a question asked later, labelled `must_miss`
(a look-alike: the stored answer is wrong for it) or `must_hit` (a paraphrase: the stored
answer is right), with its kind (services/cache/verifiers/perturb_tables.KINDS), where it came
from, the rule that made it, and its half: `fit` or `held` by benchmarks.common.is_fit of
"stored\\nasked". Two sources:

- templates (benchmarks/lookalike_templates.py), written by hand with slot fills;
- real questions from QQP, BANKING77 and CLINC150, edited by services/cache/verifiers/perturb.py
  (seed 16): per kind, one meaning-changing and one meaning-keeping edit of the same question.

Deterministic: sources are taken in hash order, edits chosen by a seeded generator, and the
file is sorted. PROVENANCE.md beside the file says the same with the counts.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.cache_quality_data import qqp_rows
from benchmarks.common import DEFAULT_DATA, REPO, hash_order, is_fit
from benchmarks.lookalike_templates import TEMPLATES
from services.cache.verifiers.perturb import perturb
from services.cache.verifiers.perturb_tables import KINDS
from services.cache.verifiers.replay import Probe, Space

SEED = 16
OUT = REPO / "benchmarks" / "data" / "lookalike"
FILLS_PER_TEMPLATE = 4
# Real-question pairs per (kind, label, dataset); kinds the rules rarely find get fewer.
PER_KIND_AND_SOURCE = 8
SOURCE_QUESTIONS = 6000  # per dataset, taken in hash order


@dataclass(frozen=True)
class LookalikePair:
    kind: str
    label: str  # "must_hit" or "must_miss"
    stored: str
    asked: str
    source: str  # "template" or the dataset's name
    rule: str
    half: str  # "fit" or "held"

    @property
    def must_hit(self) -> bool:
        return self.label == "must_hit"


def _pair(kind: str, hit: bool, stored: str, asked: str, source: str, rule: str) -> LookalikePair:
    half = "fit" if is_fit(f"{stored}\n{asked}") else "held"
    return LookalikePair(
        kind, "must_hit" if hit else "must_miss", stored, asked, source, rule, half
    )


def _fill(text: str, slots: dict[str, tuple[str, ...]], i: int) -> str:
    values = {}
    for name, options in slots.items():
        values[name] = options[i % len(options)]
        values[name + "2"] = options[(i + 1) % len(options)]
    return text.format(**values)


def template_pairs() -> Iterator[LookalikePair]:
    for kind, templates in TEMPLATES.items():
        for t, (anchor, lookalikes, paraphrases, slots) in enumerate(templates):
            fills = min(FILLS_PER_TEMPLATE, max((len(v) for v in slots.values()), default=1))
            for i in range(fills):
                stored = _fill(anchor, slots, i)
                for j, asked in enumerate(lookalikes):
                    yield _pair(
                        kind, False, stored, _fill(asked, slots, i), "template", f"t{t}-miss{j}"
                    )
                for j, asked in enumerate(paraphrases):
                    yield _pair(
                        kind, True, stored, _fill(asked, slots, i), "template", f"t{t}-hit{j}"
                    )


def real_questions(data: Path) -> dict[str, list[str]]:
    """Questions of each dataset in hash order (QQP: both sides of its rows)."""
    qqp = [str(r[side]) for r in qqp_rows(data) for side in ("text_a", "text_b")]
    with (data / "banking77" / "train.csv").open(newline="", encoding="utf-8") as f:
        banking = [row["text"] for row in csv.DictReader(f)]
    clinc = [
        text for text, _ in json.loads((data / "clinc150" / "data_full.json").read_text())["train"]
    ]
    return {
        name: sorted(set(texts), key=hash_order)[:SOURCE_QUESTIONS]
        for name, texts in (("qqp", qqp), ("banking77", banking), ("clinc150", clinc))
    }


def rule_pairs(questions: dict[str, list[str]]) -> Iterator[LookalikePair]:
    """Per dataset and kind, up to PER_KIND_AND_SOURCE questions each give one look-alike and
    one paraphrase (perturb's pick), so both labels come from the same questions."""
    for source, texts in questions.items():
        taken: Counter[str] = Counter()
        for text in texts:
            if len(text) > 200 or all(taken[k] >= PER_KIND_AND_SOURCE for k in KINDS):
                continue
            edits = perturb(text, SEED)
            for kind in KINDS:
                of_kind = [e for e in edits if e.kind == kind]
                pair = [e for e in of_kind if not e.keeps_meaning][:1] + [
                    e for e in of_kind if e.keeps_meaning
                ][:1]
                if len(pair) < 2 or taken[kind] >= PER_KIND_AND_SOURCE:
                    continue
                taken[kind] += 1
                for edit in pair:
                    yield _pair(kind, edit.keeps_meaning, text, edit.text, source, edit.rule)
                break  # one kind per question, so no question dominates the set


def build(data: Path) -> list[LookalikePair]:
    pairs = {(p.stored, p.asked): p for p in [*template_pairs(), *rule_pairs(real_questions(data))]}
    return sorted(
        (p for p in pairs.values() if p.stored != p.asked),
        key=lambda p: (p.kind, p.source, p.stored, p.asked),
    )


def load_pairs(path: Path = OUT / "pairs.jsonl") -> list[LookalikePair]:
    with path.open(encoding="utf-8") as f:
        return [LookalikePair(**json.loads(line)) for line in f if line.strip()]


def summary(pairs: Sequence[LookalikePair]) -> str:
    counts = Counter((p.kind, p.label, p.half) for p in pairs)
    sources = Counter((p.source, p.label) for p in pairs)
    lines = [
        "| kind | must_miss fit | must_miss held | must_hit fit | must_hit held |",
        "|---|---|---|---|---|",
    ]
    for kind in KINDS:
        cells = [
            counts[(kind, label, half)]
            for label in ("must_miss", "must_hit")
            for half in ("fit", "held")
        ]
        lines.append(f"| {kind} | " + " | ".join(str(c) for c in cells) + " |")
    lines.append("")
    lines += [f"- {source}, {label}: {n}" for (source, label), n in sorted(sources.items())]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    pairs = build(Path(args.data))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "pairs.jsonl").open("w", encoding="utf-8") as f:
        for pair in pairs:
            f.write(json.dumps(asdict(pair), ensure_ascii=False, sort_keys=True) + "\n")
    print(f"{len(pairs)} pairs -> {out / 'pairs.jsonl'}")
    print(summary(pairs))


def as_spaces(pairs: Sequence[LookalikePair]) -> list[Space]:
    """One namespace per pair, as the QQP workload: `stored` kept, `asked` looked up; only a
    must_hit pair's lookup may be served."""
    return [
        Space(f"lookalike-{i}", {p.stored: f"lookalike-{i}"},
              [Probe(p.asked, f"lookalike-{i}" if p.must_hit else None, p.half == "fit")])
        for i, p in enumerate(pairs)
    ]  # fmt: skip


if __name__ == "__main__":
    main()

"""How often the gold answer survives compression, how much is saved, and how long it takes.

    python -m benchmarks.compression [--data ../shared/data] [--limit 60] [--sizes 2000,8000,32000]

The real compressor service (`python -m services.compressor`, ONNX embedder) runs on loopback
and every prompt goes through its Compress RPC with the extractive strategy at target ratios
0.5, 0.25 and 0.125 of the context (2x, 4x and 8x). A question counts as retained when one of
its gold answers is still a substring of the compressed prompt (case and whitespace ignored).

- leval-longqa: NaturalQuestions and CUAD documents as they are (about 5k-50k tokens), only
  questions whose answer occurs verbatim in the document.
- nq-open-oracle: the gold passage among distractor passages of other questions (none holding
  one of this question's answers) up to 2k, 8k and 32k tokens, gold at a position chosen by
  hash, in the "Lost in the Middle" layout.

Questions are split by a hash of their id (benchmarks.common.bucket): buckets 0-4 were used to
tune the extractive strategy, and the headline figures are on buckets 5-9 only. --limit takes
whole L-Eval documents in hash order until N questions, and the first N NQ questions
in hash order per size. Latency per 10k tokens is
reported cold (the first request on an L-Eval document, whose sentences are all embedded), warm
(later questions and ratios on the same document, served by the service's vector cache), and
for nq-open-oracle prompts, whose distractors the cache already holds.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from sluice.common.v1 import common_pb2
from sluice.compressor.v1 import compressor_service_pb2 as pb
from sluice.compressor.v1 import compressor_service_pb2_grpc as pb_grpc

from benchmarks.common import DEFAULT_DATA, bucket, hash_order, markdown_table, running_service
from shared.embedding.onnx import VARIANTS
from shared.tokens import TokenCounter

RATIOS = {"2x": 0.5, "4x": 0.25, "8x": 0.125}
SYSTEM = "Answer the question using only the document the user gives."
TARGET_MODEL = "gpt-4o"
CALL_TIMEOUT_S = 300.0
# Passages of questions not evaluated, from which distractors are drawn: ~60k tokens, enough
# for the 32k size, and few enough that the service's vector cache holds them all.
DISTRACTOR_POOL = 600


@dataclass(frozen=True)
class Case:
    """One question over one context."""

    dataset: str
    size: str
    question_id: str
    document_id: str
    context: str
    question: str
    answers: tuple[str, ...]

    @property
    def held_out(self) -> bool:
        return bucket(self.question_id) >= 5


@dataclass
class Cell:
    """Outcomes of one (dataset, size, ratio)."""

    retained: list[bool] = field(default_factory=list)
    original: int = 0
    compressed: int = 0
    held_out: list[bool] = field(default_factory=list)


def norm(text: str) -> str:
    return " ".join(text.lower().split())


def leval_cases(data: Path, name: str, dataset: str) -> Iterator[Case]:
    with (data / "leval-longqa" / f"{name}.jsonl").open() as rows:
        for doc, line in enumerate(rows):
            row = json.loads(line)
            document = row["input"]
            for n, (question, answer) in enumerate(
                zip(row["instructions"], row["outputs"], strict=True)
            ):
                if answer.strip() and norm(answer) in norm(document):
                    yield Case(
                        dataset, "doc", f"{name}:{doc}:{n}", f"{name}:{doc}", document,
                        question, (answer,),
                    )  # fmt: skip


def nq_cases(data: Path, sizes: Sequence[int], limit: int, counter: TokenCounter) -> list[Case]:
    rows = [json.loads(line) for line in (data / "nq-open-oracle" / "nq-open-oracle.jsonl").open()]
    order = sorted(range(len(rows)), key=lambda i: hash_order(rows[i]["question"]))
    count = limit or len(rows) - DISTRACTOR_POOL
    chosen, pool_ids = order[:count], order[count : count + DISTRACTOR_POOL]
    pool = [_passage(rows[i]) for i in pool_ids]
    pool_tokens = [counter.count(p) for p in pool]
    cases = []
    for i in chosen:
        row = rows[i]
        answers = tuple(a for a in row["answers"] if a.strip())
        gold = _passage(row)
        usable = [k for k, p in enumerate(pool) if not any(norm(a) in norm(p) for a in answers)]
        for size in sizes:
            rng = random.Random(f"{row['question']}:{size}")
            rng.shuffle(usable)
            picked, total = [], counter.count(gold)
            for k in usable:
                if total + pool_tokens[k] > size:
                    break
                picked.append(pool[k])
                total += pool_tokens[k]
            picked.insert(rng.randrange(len(picked) + 1), gold)
            # Unnumbered, so a distractor reads the same in every prompt and the service embeds
            # it once (its vector cache), as it would a document that many requests resend.
            context = "\n\n".join(f"Document {p}" for p in picked)
            cases.append(
                Case(
                    "nq-open-oracle", f"{size // 1000}k", f"nq:{i}", f"nq:{i}:{size}",
                    context, row["question"], answers,
                )
            )  # fmt: skip
    return cases


def _passage(row: dict[str, Any]) -> str:
    ctx = row["ctxs"][0]
    return f"(Title: {ctx['title']}) {ctx['text']}"


def whole_documents(cases: Sequence[Case], limit: int) -> list[Case]:
    """Whole documents in hash order until `limit` questions (0: all).

    Whole documents, not scattered questions: embedding a long document is the expensive part,
    and its later questions reuse the vectors (the warm latency).
    """
    chosen: list[Case] = []
    for document in sorted({c.document_id for c in cases}, key=hash_order):
        if limit and len(chosen) >= limit:
            break
        chosen.extend(c for c in cases if c.document_id == document)
    return chosen


def request_for(case: Case, ratio: float) -> pb.CompressRequest:
    messages = [
        common_pb2.ChatMessage(role=common_pb2.ROLE_SYSTEM, content=SYSTEM),
        common_pb2.ChatMessage(
            role=common_pb2.ROLE_USER, content=f"{case.context}\n\nQuestion: {case.question}"
        ),
    ]
    return pb.CompressRequest(
        messages=messages,
        target_ratio=ratio,
        target_model=TARGET_MODEL,
        strategy=pb.COMPRESSION_STRATEGY_EXTRACTIVE,
    )


def compress(stub: pb_grpc.PromptCompressorServiceStub, case: Case, ratio: float) -> Any:
    return stub.Compress(request_for(case, ratio), timeout=CALL_TIMEOUT_S)


def run(stub: pb_grpc.PromptCompressorServiceStub, cases: Sequence[Case]) -> dict[str, Any]:
    cells: dict[tuple[str, str, str], Cell] = {}
    latency: dict[str, list[tuple[float, int]]] = {"cold": [], "warm": [], "shared": []}
    seen: set[str] = set()
    # Documents first, so that a document's first question is its cold request.
    for case in sorted(cases, key=lambda c: (c.document_id, c.question_id)):
        for label, ratio in RATIOS.items():
            started = time.perf_counter()
            response = compress(stub, case, ratio)
            elapsed = time.perf_counter() - started
            # nq-open-oracle prompts share their distractors, which the service has embedded
            # once already: neither cold nor a resent document, so they are reported apart.
            kind = "warm" if case.document_id in seen else "cold"
            kind = "shared" if case.dataset == "nq-open-oracle" else kind
            if kind == "cold":
                print(f"{case.document_id}: {elapsed:.1f} s", file=sys.stderr, flush=True)
            seen.add(case.document_id)
            latency[kind].append((elapsed, response.original_tokens))
            text = norm("\n".join(m.content for m in response.messages))
            ok = any(norm(a) in text for a in case.answers)
            cell = cells.setdefault((case.dataset, case.size, label), Cell())
            cell.retained.append(ok)
            cell.held_out.append(case.held_out)
            cell.original += response.original_tokens
            cell.compressed += response.compressed_tokens
    return {"cells": cells, "latency": latency}


def per_10k_ms(samples: Sequence[tuple[float, int]]) -> float | None:
    if not samples:
        return None
    return round(statistics.median(1e7 * s / max(t, 1) for s, t in samples), 1)


def rate(cells: Sequence[Cell], held_out: bool | None) -> tuple[int, int]:
    hits = total = 0
    for cell in cells:
        for ok, out in zip(cell.retained, cell.held_out, strict=True):
            if held_out is None or out == held_out:
                hits += ok
                total += 1
    return hits, total


def figures(outcome: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    cells: dict[tuple[str, str, str], Cell] = outcome["cells"]
    result: dict[str, Any] = {"target_model": TARGET_MODEL, "limit": args.limit, "groups": {}}
    for label in RATIOS:
        chosen = [c for k, c in cells.items() if k[2] == label]
        hits, total = rate(chosen, True)
        result[f"retention_at_{label}"] = round(hits / total, 4) if total else None
        dev_hits, dev_total = rate(chosen, False)
        result[f"retention_at_{label}_dev"] = round(dev_hits / dev_total, 4) if dev_total else None
        original = sum(c.original for c in chosen)
        result[f"compression_at_{label}"] = round(
            original / max(1, sum(c.compressed for c in chosen)), 2
        )
        result[f"tokens_saved_at_{label}"] = original - sum(c.compressed for c in chosen)
    for (dataset, size, label), cell in sorted(cells.items()):
        hits, total = rate([cell], True)
        group = result["groups"].setdefault(f"{dataset}/{size}", {"held_out_questions": total})
        group[f"retention_at_{label}"] = round(hits / total, 4) if total else None
        group[f"compression_at_{label}"] = round(cell.original / max(1, cell.compressed), 2)
        group[f"tokens_saved_at_{label}"] = cell.original - cell.compressed
    result["latency_ms_per_10k_tokens_cold"] = per_10k_ms(outcome["latency"]["cold"])
    result["latency_ms_per_10k_tokens_warm"] = per_10k_ms(outcome["latency"]["warm"])
    result["latency_ms_per_10k_tokens_nq_shared"] = per_10k_ms(outcome["latency"]["shared"])
    return result


def table(result: dict[str, Any]) -> str:
    rows = []
    for name, group in result["groups"].items():
        rows.append(
            [name, group["held_out_questions"]]
            + [
                f"{100 * group[f'retention_at_{k}']:.1f}% ({group[f'compression_at_{k}']}x)"
                if group[f"retention_at_{k}"] is not None
                else "-"
                for k in RATIOS
            ]
            + [group["tokens_saved_at_4x"]]
        )
    headers = ("dataset/size", "held-out questions", *(f"retained at {k}" for k in RATIOS))
    return markdown_table((*headers, "tokens saved at 4x"), rows)


def load_cases(args: argparse.Namespace, counter: TokenCounter) -> list[Case]:
    sizes = [int(s) for s in args.sizes.split(",") if s]
    cases = whole_documents(
        list(leval_cases(args.data, "natural_question", "leval-nq")), args.limit
    )
    cases += whole_documents(
        list(leval_cases(args.data, "legal_contract_qa", "leval-cuad")), args.limit
    )
    return cases + nq_cases(args.data, sizes, args.limit, counter)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--limit", type=int, default=40, help="questions per dataset and size; 0 for all"
    )
    parser.add_argument("--sizes", default="2000,8000,32000", help="nq-open-oracle tokens")
    parser.add_argument(
        "--embed-variant", choices=VARIANTS, help="the MiniLM export (default: the service's)"
    )
    args = parser.parse_args(argv)
    cases = load_cases(args, TokenCounter())
    env = {
        "SLUICE_COMPRESSOR_MIN_TOKENS": "0",
        "SLUICE_COMPRESSOR_EMBED_CACHE_SIZE": "200000",
        "SLUICE_LOG_LEVEL": "WARNING",
    }
    if args.embed_variant:
        env["SLUICE_COMPRESSOR_EMBED_VARIANT"] = args.embed_variant
    with tempfile.TemporaryDirectory(prefix="sluice-compression-") as tmp:
        log = Path(tmp) / "compressor.log"
        with (
            running_service("compressor", env, log_path=log) as address,
            grpc.insecure_channel(address) as channel,
        ):
            outcome = run(pb_grpc.PromptCompressorServiceStub(channel), cases)
    result = figures(outcome, args)
    print(f"{len(cases)} questions, {sum(c.held_out for c in cases)} held out (hash buckets 5-9)")
    print(table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Long prompts through the real cache service: does a shared document ever make one question
serve another's answer?

L-Eval's long-document QA sets (`leval-longqa`: contracts, NaturalQuestions pages, papers,
dialogues, stories; 2k-43k words) give documents with several questions each. For every
document, at several lengths (its first 100, 200 and 2,000 words, and all of it) and with the
question at the end, at the start and in the middle, the benchmark stores the document with its
first question, then looks up

- the same document with its second question: a hit is a wrong hit (`long_prompt_wrong_hits`,
  target 0);
- the same request again: it must hit (`same_question_hits`);
- the same request with the question lower-cased and its final punctuation dropped: a
  semantic hit when the question is at the end (`reworded_hits`).

All through `python -m services.cache` with its default settings, on loopback. It also counts
how many second questions the old keying would have served: their whole turn's MiniLM vectors
(which see only the first 254 word pieces) at or above the service's cosine threshold 0.90
(`old_keying_wrong_hits`). The last line is JSON.

    .venv/bin/python benchmarks/cache_long_prompts.py [--docs N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.cache.v1 import cache_service_pb2_grpc as pb_grpc

from benchmarks.cache_service import (
    MODEL_CLASS,
    CacheService,
    Stub,
    cache_process,
    tenant,
    user_turn,
)
from benchmarks.common import DEFAULT_DATA, embed, hash_order

LENGTHS: tuple[int | None, ...] = (100, 200, 2000, None)  # words of document; None: all
POSITIONS = ("end", "start", "middle")
SETS = ("legal_contract_qa", "natural_question", "scientific_qa", "multidoc_qa", "quality")
OLD_THRESHOLD = 0.90


@dataclass(frozen=True)
class Case:
    tenant: str
    first: str  # the stored turn
    second: str  # the same document, another question: must miss
    reworded: str  # the first question, reworded trivially
    where: str


def documents(data: Path, limit: int | None) -> list[tuple[str, str, str]]:
    """(document, first question, second question) for documents with two distinct ones."""
    found = []
    for name in SETS:
        for line in (data / "leval-longqa" / f"{name}.jsonl").read_text().splitlines():
            row = json.loads(line)
            questions = list(dict.fromkeys(q.strip() for q in row["instructions"] if q.strip()))
            if len(questions) >= 2:
                found.append((row["input"], questions[0], questions[1]))
    found.sort(key=lambda item: hash_order(item[1]))
    return found[:limit]


def cut(document: str, words: int | None) -> str:
    """The document's first `words` words, keeping its own line breaks."""
    if words is None:
        return document.strip()
    kept, count = [], 0
    for line in document.strip().splitlines():
        take = line.split()[: words - count]
        kept.append(" ".join(take))
        count += len(take)
        if count >= words:
            break
    return "\n".join(kept)


def placed(document: str, question: str, where: str) -> str:
    if where == "end":
        return f"{document}\n\n{question}"
    if where == "start":
        return f"{question}\n\n{document}"
    lines = document.splitlines()
    if len(lines) < 2:
        words = document.split()
        lines = [" ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2 :])]
    middle = len(lines) // 2
    return "\n".join([*lines[:middle], "", question, "", *lines[middle:]])


def reword(question: str) -> str:
    """Lower case without final punctuation; a question already so gets a question mark."""
    reworded = question.lower().rstrip("?.! ")
    return reworded if reworded != question else f"{question}?"


def cases(data: Path, limit: int | None) -> Iterator[Case]:
    for index, (document, first, second) in enumerate(documents(data, limit)):
        for words in LENGTHS:
            doc = cut(document, words)
            for where in POSITIONS:
                yield Case(
                    f"long-{index}-{words}-{where}",
                    placed(doc, first, where),
                    placed(doc, second, where),
                    placed(doc, reword(first), where),
                    where,
                )


async def replay_cases(stub: Stub, all_cases: Sequence[Case]) -> dict[str, int]:
    """Stores each case's first turn and looks up its three variants, 16 cases at a time (each
    case is its own tenant, so their order does not matter); counts the hits of each."""
    figures = dict.fromkeys(("wrong", "same", "reworded", "reworded_end"), 0)
    limit = asyncio.Semaphore(16)

    async def one(case: Case) -> None:
        async with limit:
            context = tenant(case.tenant)
            await stub.Store(
                pb.StoreRequest(
                    context=context,
                    model_class=MODEL_CLASS,
                    messages=user_turn(case.first),
                    content="A",
                    model=MODEL_CLASS,
                ),
                timeout=120,
            )
            for key, text in (("wrong", case.second), ("same", case.first),
                              ("reworded", case.reworded)):  # fmt: skip
                asked = pb.LookupRequest(
                    context=context,
                    model_class=MODEL_CLASS,
                    messages=user_turn(text),
                    allow_semantic=True,
                )
                reply = await stub.Lookup(asked, timeout=120)
                hit = reply.kind != pb.HIT_KIND_MISS
                figures[key] += hit
                if key == "reworded" and case.where == "end":
                    figures["reworded_end"] += hit

    await asyncio.gather(*(one(case) for case in all_cases))
    return figures


async def _replay(address: str, all_cases: Sequence[Case]) -> dict[str, int]:
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        return await replay_cases(pb_grpc.SemanticCacheServiceStub(channel), all_cases)


def old_keying_hits(all_cases: Sequence[Case], embed_cache: Path | None) -> int:
    """Second questions the old keying would have served: whole-turn cosine >= 0.90."""

    # The model reads the first 256 word pieces; the first 1,000 words hold more than that (a
    # word is at least one piece), so cutting there gives the same vectors, faster.
    def head(text: str) -> str:
        return " ".join(text.split(" ")[:1000])

    texts = sorted({head(t) for c in all_cases for t in (c.first, c.second)})
    vectors = embed(texts, embed_cache)
    return sum(
        float(np.dot(vectors[head(c.first)], vectors[head(c.second)])) >= OLD_THRESHOLD
        for c in all_cases
    )


def run(
    data: Path,
    docs: int | None = None,
    embed_cache: Path | None = None,
    *,
    service: CacheService | None = None,
    old_keying: bool = True,
) -> dict[str, int]:
    """The suite through a fresh cache service with its default settings (`service`, by default
    the real process); `old_keying` also embeds every case in-process for the old keying's
    count (several minutes), else that figure is left out. Callable from cache_quality.py."""
    all_cases = list(cases(data, docs))
    with (service or cache_process())({}) as address:
        started = time.monotonic()
        figures = asyncio.run(_replay(address, all_cases))
        print(f"long prompts, service run: {time.monotonic() - started:.0f}s", file=sys.stderr)
    ends = sum(c.where == "end" for c in all_cases)
    measured = {
        "cases": len(all_cases),
        "long_prompt_wrong_hits": figures["wrong"],
        "same_question_hits": figures["same"],
        "reworded_hits": figures["reworded"],
        "reworded_end_hits": figures["reworded_end"],
        "reworded_end_cases": ends,
    }
    if old_keying:
        measured["old_keying_wrong_hits"] = old_keying_hits(all_cases, embed_cache)
    return measured


def long_prompt_wrong_hits(data: Path = DEFAULT_DATA, service: CacheService | None = None) -> int:
    """For benchmarks/cache_quality.py: wrong hits over the whole suite, through `service` (the
    real process by default); prints the suite's figures on one line first."""
    figures = run(data, service=service, old_keying=False)
    print(f"long-prompt suite, through the service: {json.dumps(figures, sort_keys=True)}")
    return figures["long_prompt_wrong_hits"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--docs", type=int, default=None, help="documents to use (default all)")
    parser.add_argument("--embed-cache", default=None, help=".npz file to keep vectors in")
    args = parser.parse_args(argv)
    embed_cache = Path(args.embed_cache) if args.embed_cache else None
    figures = run(Path(args.data), args.docs, embed_cache)
    n = figures["cases"]
    print(f"{n} cases ({n // (len(LENGTHS) * len(POSITIONS))} documents x {len(LENGTHS)} "
          f"lengths x {len(POSITIONS)} positions)")  # fmt: skip
    print(f"another question after the same document served: {figures['long_prompt_wrong_hits']}"
          f" of {n} (old keying: {figures['old_keying_wrong_hits']})")  # fmt: skip
    print(f"the same request again served: {figures['same_question_hits']} of {n}")
    print(f"the question reworded served: {figures['reworded_hits']} of {n} "
          f"({figures['reworded_end_hits']} of {figures['reworded_end_cases']} with the "
          "question at the end)")  # fmt: skip
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()

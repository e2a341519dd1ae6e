"""What the gateway can see about an answer at run time, turned into numbers.

Only the prompt, the answer, the model that wrote it and the earlier tiers' answers are used:
never a label. The handcrafted part follows FrugalGPT's scorer inputs (query and answer) plus
the signals a gateway has for free: the format the prompt asked for, and whether cheaper tiers
already gave the same answer (agreement between independent models is strong evidence).
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

# MiniLM reads at most 256 word pieces (~1,000 characters) and truncates the rest. Few-shot
# prompts put the real question last, after examples shared by every prompt, so we embed the
# tail: the last blank-line separated block, with earlier blocks only while it is too short to
# say much on its own (a bare "What is wrong?" after a pasted snippet).
FOCUS_CHARS = 1000
MIN_FOCUS_CHARS = 200
ANSWER_CHARS = 1000
MAX_OPTIONS = 4
_OPTION_LINE = re.compile(r"^\s*\(?([A-H])[).:]\s+(.+?)\s*$", re.MULTILINE)
_LEADING_LETTER = re.compile(r"^\(?([A-H])\)?(?=$|[\s).:,])")
_ANSWER_IS = re.compile(r"answer is:?\s*\(?([A-H])\b", re.IGNORECASE)
_FENCE = re.compile(r"```([\w+#-]*)[^\n]*\n(.*?)```", re.DOTALL)
# Code Llama wraps its programs in [PYTHON] tags instead of fences.
_PYTHON_TAGS = re.compile(r"\[PYTHON\](.*?)\[/PYTHON\]", re.DOTALL)
_CODE_WORDS = re.compile(r"\b(function|python|code|program|script|method|class)\b", re.I)
# Openings with which chat models decline or hedge instead of answering.
_DECLINE = re.compile(
    r"^(i'?m sorry|i (do not|don't|cannot|can't|am unable)|unfortunately|as an ai|there is no)",
    re.IGNORECASE,
)
_PYTHON_LANGS = frozenset({"", "python", "py", "python3"})


class Kind(StrEnum):
    CHOICE = "choice"  # pick one of lettered options (ARC, WinoGrande)
    CODE = "code"  # write a program (MBPP)
    FREE = "free"  # anything else


@dataclass(frozen=True)
class PromptInfo:
    kind: Kind
    options: Mapping[str, str]  # letter -> option text, for choice prompts
    focus: str  # the part of the prompt worth embedding


def prompt_focus(prompt: str) -> str:
    blocks = [b for b in re.split(r"\n\s*\n", prompt.strip()) if b.strip()]
    kept: list[str] = []
    size = 0
    for block in reversed(blocks):
        if kept and (size >= MIN_FOCUS_CHARS or size + len(block) > FOCUS_CHARS):
            break
        kept.append(block)
        size += len(block) + 2
    return "\n\n".join(reversed(kept))[-FOCUS_CHARS:]


def read_prompt(prompt: str) -> PromptInfo:
    blocks = [b for b in re.split(r"\n\s*\n", prompt.strip()) if b.strip()]
    last = blocks[-1] if blocks else ""
    options = {m.group(1): m.group(2) for m in _OPTION_LINE.finditer(last)}
    if len(options) >= 2:
        kind = Kind.CHOICE
    elif _CODE_WORDS.search(prompt):
        kind = Kind.CODE
    else:
        kind = Kind.FREE
    return PromptInfo(kind, options if kind is Kind.CHOICE else {}, prompt_focus(prompt))


def choice_of(answer: str, options: Mapping[str, str]) -> str | None:
    """The option letter an answer picks, or None when it picks none of them clearly."""
    text = answer.strip()
    for pattern in (_LEADING_LETTER, _ANSWER_IS):
        found = pattern.search(text)
        if found and found.group(1) in options:
            return found.group(1)
    # Some models answer with the option's text ("Rachel") instead of its letter.
    lowered = text.lower().rstrip(".")
    for letter, option in options.items():
        if lowered and lowered == option.lower().rstrip("."):
            return letter
    return None


def _parses(code: str) -> bool:
    try:
        # Model answers may hold invalid escape sequences; that is not our warning to raise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def code_of(answer: str) -> str | None:
    """The first fenced Python block that parses, or the whole answer if it is bare code."""
    for match in _FENCE.finditer(answer):
        if match.group(1).lower() in _PYTHON_LANGS and _parses(match.group(2)):
            return match.group(2)
    for match in _PYTHON_TAGS.finditer(answer):
        if _parses(match.group(1)):
            return match.group(1)
    if "def " in answer and "```" not in answer and _parses(answer):
        return answer
    return None


def canonical(answer: str, info: PromptInfo) -> str:
    """A normal form under which two answers that say the same thing compare equal."""
    if info.kind is Kind.CHOICE:
        return choice_of(answer, info.options) or ""
    if info.kind is Kind.CODE:
        code = code_of(answer)
        if code is not None:
            # Comments, quoting and layout differ between models; the syntax tree does not.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return ast.unparse(ast.parse(code))
    return " ".join(re.sub(r"[^\w\s]", " ", answer.lower()).split())


STAT_NAMES = (
    "log_chars",
    "log_lines",
    "format_ok",
    "exact_format",
    "has_fence",
    "foreign_fence",
    "declines",
    "n_options",
)


def answer_stats(answer: str, info: PromptInfo) -> list[float]:
    text = answer.strip()
    fences = [m.group(1).lower() for m in _FENCE.finditer(answer)]
    fences += ["python"] * len(_PYTHON_TAGS.findall(answer))
    if info.kind is Kind.CHOICE:
        format_ok = choice_of(text, info.options) is not None
        exact = len(text) == 1 and text in info.options
    elif info.kind is Kind.CODE:
        format_ok = code_of(answer) is not None
        exact = format_ok and bool(fences)
    else:
        format_ok = exact = bool(text)
    return [
        math.log1p(len(text)) / 8.0,
        math.log1p(text.count("\n")) / 4.0,
        float(format_ok),
        float(exact),
        float(bool(fences)),
        # An answer in JavaScript to a Python question is wrong whatever it says.
        float(any(lang not in _PYTHON_LANGS for lang in fences)),
        float(bool(_DECLINE.match(text))),
        len(info.options) / MAX_OPTIONS,
    ]


AGREEMENT_NAMES = ("has_earlier", "agree_fraction", "agree_previous", "max_similarity")


def agreement(
    answer: str,
    info: PromptInfo,
    earlier: Sequence[str],
    answer_vector: NDArray[np.float32],
    earlier_vectors: NDArray[np.float32],
) -> list[float]:
    """How far earlier tiers' answers (oldest first) agree with this one."""
    if not earlier:
        return [0.0, 0.0, 0.0, 0.0]
    mine = canonical(answer, info)
    same = [bool(mine) and canonical(other, info) == mine for other in earlier]
    similarity = float(np.max(earlier_vectors @ answer_vector))
    return [1.0, sum(same) / len(same), float(same[-1]), similarity]


def option_onehot(answer: str, info: PromptInfo) -> list[float]:
    """Which option position was picked; models have position biases the scorer can learn."""
    slots = [0.0] * (MAX_OPTIONS + 1)
    letter = choice_of(answer, info.options) if info.kind is Kind.CHOICE else None
    position = sorted(info.options).index(letter) if letter else MAX_OPTIONS
    slots[min(position, MAX_OPTIONS)] = 1.0
    return slots


# Prompt formats the scorer keeps apart: a model that is strong at picking one of many options
# may be weak at two-way commonsense choices or at code, so model identity, agreement and the
# answer statistics are each crossed with the format (a linear model cannot do that itself).
GROUPS = ("choice_two", "choice_many", "code", "free")


def group_onehot(info: PromptInfo) -> list[float]:
    if info.kind is Kind.CHOICE:
        group = "choice_two" if len(info.options) <= 2 else "choice_many"
    else:
        group = info.kind.value
    return [float(group == name) for name in GROUPS]


def model_onehot(model: str, models: Sequence[str]) -> list[float]:
    """Known models one-hot, plus a last slot for a model the scorer was not trained on."""
    slots = [float(model == known) for known in models]
    return [*slots, float(not any(slots))]


def _crossed(values: Sequence[float], groups: Sequence[float]) -> list[float]:
    return [v * g for v in values for g in groups]


def handcrafted(
    answer: str,
    model: str,
    info: PromptInfo,
    earlier: Sequence[str],
    vectors: tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]],
    models: Sequence[str],
) -> list[float]:
    """Every non-projection feature, in the order `handcrafted_names` gives."""
    prompt_vector, answer_vector, earlier_vectors = vectors
    stats = answer_stats(answer, info)
    agree = agreement(answer, info, earlier, answer_vector, earlier_vectors)
    identity = model_onehot(model, models)
    groups = group_onehot(info)
    return [
        float(prompt_vector @ answer_vector),
        *stats,
        *agree,
        *option_onehot(answer, info),
        *groups,
        *identity,
        *_crossed(identity, groups),
        *_crossed(agree, groups),
        *_crossed(stats, groups),
    ]


def handcrafted_names(models: Sequence[str]) -> list[str]:
    identity = [*(f"model={m}" for m in models), "model=other"]
    return [
        "prompt_answer_similarity",
        *STAT_NAMES,
        *AGREEMENT_NAMES,
        *(f"option_{i}" for i in range(MAX_OPTIONS)),
        "option_none",
        *(f"format={g}" for g in GROUPS),
        *identity,
        *(f"{name}*{g}" for name in identity for g in GROUPS),
        *(f"{name}*{g}" for name in AGREEMENT_NAMES for g in GROUPS),
        *(f"{name}*{g}" for name in STAT_NAMES for g in GROUPS),
    ]

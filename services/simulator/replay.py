"""Recorded real answers from RouterBench CSVs, served back by exact prompt.

Layout (see the data's SOURCE.md): `prompt` and `<model>|model_response` hold the string repr
of a Python list whose first element is the text, and `<model>|total_cost` the call's USD cost.
Prompts are keyed whitespace-normalised, so a lookup is one dict access whatever the data size.
A folder in RouteLLM's evaluation layout is read by replay_routellm.py instead.
"""

from __future__ import annotations

import ast
import csv
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LOG = logging.getLogger(__name__)
_RESPONSE_SUFFIX = "|model_response"
_COST_SUFFIX = "|total_cost"
# Few-shot prompts and long code answers exceed csv's default 128 KiB field limit.
_FIELD_LIMIT = 2**31 - 1


class ReplayError(ValueError):
    """A replay file is missing or malformed; the message names the file and row."""


@dataclass(frozen=True)
class Recording:
    """One model's real answer to one prompt."""

    response: str
    # None when the data records no cost: the gateway prices the tokens from its catalogue.
    cost_usd: float | None


def normalise_prompt(text: str) -> str:
    """Collapses whitespace runs, so re-wrapped or re-indented prompts still match."""
    return " ".join(text.split())


class ReplayBook:
    """Recordings keyed by normalised prompt, then model."""

    def __init__(self, models: tuple[str, ...], entries: Mapping[str, Mapping[str, Recording]]):
        self.models = models
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def serves(self, model: str) -> bool:
        return model in self.models

    def lookup(self, prompt: str, model: str) -> Recording | None:
        by_model = self._entries.get(normalise_prompt(prompt))
        return None if by_model is None else by_model.get(model)


def _first_text(where: str, raw: str) -> str:
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ReplayError(f"{where} is not a Python list literal") from None
    if not isinstance(value, list) or not value or not isinstance(value[0], str):
        raise ReplayError(f"{where} is not a non-empty list of strings")
    return value[0]


def _cost(where: str, raw: str) -> float:
    try:
        cost = float(raw)
    except ValueError:
        raise ReplayError(f"{where}={raw!r} is not a number") from None
    if not cost >= 0.0:  # also rejects NaN
        raise ReplayError(f"{where}={raw!r} must be a non-negative USD amount")
    return cost


def _models_of(path: Path, header: Sequence[str] | None) -> list[str]:
    if not header or "prompt" not in header:
        raise ReplayError(f"{path}: no 'prompt' column in the header")
    models = [c.removesuffix(_RESPONSE_SUFFIX) for c in header if c.endswith(_RESPONSE_SUFFIX)]
    missing = [m for m in models if m + _COST_SUFFIX not in header]
    if not models or missing:
        raise ReplayError(f"{path}: needs <model>|model_response and <model>|total_cost columns")
    return models


def _load_file(path: Path, entries: dict[str, dict[str, Recording]]) -> list[str]:
    """Adds one CSV's recordings to entries (the first recording of a pair wins)."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        models = _models_of(path, reader.fieldnames)
        for row in reader:
            where = f"{path.name} line {reader.line_num}"
            prompt = normalise_prompt(_first_text(f"{where} prompt", row["prompt"]))
            by_model = entries.setdefault(prompt, {})
            for model in models:
                raw_response = row[model + _RESPONSE_SUFFIX]
                if not raw_response or model in by_model:
                    continue  # no result for this model, or an earlier file already has one
                by_model[model] = Recording(
                    _first_text(f"{where} {model}{_RESPONSE_SUFFIX}", raw_response),
                    _cost(f"{where} {model}{_COST_SUFFIX}", row[model + _COST_SUFFIX]),
                )
    return models


def load_replay_dir(directory: Path) -> ReplayBook:
    """Loads every *.csv in directory (train and test splits alike), in name order."""
    if not directory.is_dir():
        raise ReplayError(f"replay directory {directory} does not exist")
    # Imported here: replay_routellm builds on this module's types.
    from services.simulator.replay_routellm import is_routellm_dir, load_routellm_dir

    if is_routellm_dir(directory):
        return load_routellm_dir(directory)
    files = sorted(directory.glob("*.csv"))
    if not files:
        raise ReplayError(f"replay directory {directory} holds no *.csv files")
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    entries: dict[str, dict[str, Recording]] = {}
    models: dict[str, None] = {}
    for path in files:
        try:
            models.update(dict.fromkeys(_load_file(path, entries)))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise ReplayError(f"cannot read replay file {path}: {error}") from error
    LOG.info("replay: %d prompts, %d models from %d files", len(entries), len(models), len(files))
    return ReplayBook(tuple(models), entries)

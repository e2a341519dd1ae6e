"""`sluice up --replay DIR`: wires the whole mesh, not only the simulator, to recorded answers.

The simulator serves the recorded models only when it replays; the dispatcher calls only models
its endpoints list, and the router only the tiers its policy names. So replay mode writes an
endpoints file into the state folder (the embedded endpoints plus every replayed model) and
serves the policy made for that data, unless the user already set SLUICE_DISPATCHER_ENDPOINTS or
SLUICE_ROUTER_POLICY. Two layouts are known:

- RouterBench's `*.csv` files: the RouterBench policy (`policies/routerbench.yaml`, key
  `routerbench`);
- RouteLLM's evaluation folder (`gsm8k/gsm8k_responses.csv`, `mt_bench/`; see its SOURCE.md):
  Mixtral-8x7B then GPT-4-1106 under the RouteLLM policy (`policies/routellm.yaml`, key
  `routellm`). The simulator reads that layout itself (services/simulator/replay_routellm.py).
"""

from __future__ import annotations

import ast
import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shared.cli.keys import REPO

DEFAULT_ENDPOINTS = REPO / "services" / "dispatcher" / "endpoints.yaml"
REPLAY_POLICY = REPO / "services" / "router" / "policies" / "routerbench.yaml"
ROUTELLM_POLICY = REPO / "services" / "router" / "policies" / "routellm.yaml"
# The catalogue's names for the two models RouteLLM recorded, as the simulator serves them.
ROUTELLM_MODELS = ("mistralai/mixtral-8x7b-chat", "gpt-4-1106-preview")
_GSM8K = Path("gsm8k") / "gsm8k_responses.csv"
_MT_BENCH_QUESTIONS = Path("mt_bench") / "question.jsonl"
_RESPONSE_SUFFIX = "|model_response"
# Few-shot prompts and long code answers exceed csv's default 128 KiB field limit.
_FIELD_LIMIT = 2**31 - 1


class ReplaySetupError(ValueError):
    """The replay folder cannot be used; the message names the folder or file."""


@dataclass(frozen=True)
class ReplayData:
    """What the mesh needs to know of a replay folder."""

    models: tuple[str, ...]
    # The shortest recorded prompt: a question the start hint can suggest that has an answer.
    shortest_prompt: str
    policy: Path = REPLAY_POLICY


def read_replay(folder: Path) -> ReplayData:
    if (folder / _GSM8K).is_file() or (folder / _MT_BENCH_QUESTIONS).is_file():
        return read_routellm(folder)
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if not files:
        raise ReplaySetupError(
            f"--replay {folder}: neither RouterBench *.csv files nor RouteLLM's "
            f"{_GSM8K} or {_MT_BENCH_QUESTIONS} in that folder"
        )
    csv.field_size_limit(_FIELD_LIMIT)
    models: dict[str, None] = {}
    shortest = ""
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            if "prompt" not in columns:
                raise ReplaySetupError(f"{path}: no `prompt` column (not a RouterBench CSV)")
            for column in columns:
                if column.endswith(_RESPONSE_SUFFIX):
                    models.setdefault(column.removesuffix(_RESPONSE_SUFFIX))
            for row in reader:
                prompt = _first_text(row["prompt"])
                if prompt and (not shortest or len(prompt) < len(shortest)):
                    shortest = prompt
    if not models:
        raise ReplaySetupError(f"--replay {folder}: no `<model>|model_response` columns")
    return ReplayData(tuple(models), shortest)


def read_routellm(folder: Path) -> ReplayData:
    """RouteLLM's folder: the hint asks its shortest uncontaminated GSM8K (or MT-Bench) prompt,
    since the simulator leaves the contaminated ones out."""
    csv.field_size_limit(_FIELD_LIMIT)
    try:
        prompts = _gsm8k_prompts(folder) or _mt_bench_prompts(folder)
        excluded = _contaminated(folder / _GSM8K.parent) | _contaminated(
            folder / _MT_BENCH_QUESTIONS.parent
        )
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, KeyError, TypeError) as error:
        raise ReplaySetupError(
            f"--replay {folder}: cannot read RouteLLM's data ({error})"
        ) from None
    servable = [p for p in prompts if p and p not in excluded]
    if not servable:
        raise ReplaySetupError(f"--replay {folder}: RouteLLM's folder holds no servable prompt")
    return ReplayData(ROUTELLM_MODELS, min(servable, key=len), ROUTELLM_POLICY)


def _gsm8k_prompts(folder: Path) -> list[str]:
    if not (folder / _GSM8K).is_file():
        return []
    with (folder / _GSM8K).open(newline="", encoding="utf-8") as handle:
        return [" ".join(row["prompt"].split()) for row in csv.DictReader(handle)]


def _mt_bench_prompts(folder: Path) -> list[str]:
    rows = _jsonl(folder / _MT_BENCH_QUESTIONS)
    return [" ".join(str(row["turns"][0]).split()) for row in rows if row.get("turns")]


def _contaminated(folder: Path) -> set[str]:
    rows = _jsonl(folder / "contaminated_prompts.jsonl")
    return {" ".join(str(row["eval_prompt"]).split()) for row in rows}


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _first_text(raw: str) -> str:
    """RouterBench stores a prompt as the repr of a list; the first element is the text."""
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw.strip()
    text = value[0] if isinstance(value, list) and value else value
    return " ".join(str(text).split())


def endpoints_document(base: Mapping[str, Any], models: tuple[str, ...]) -> dict[str, Any]:
    """The embedded endpoints with every replayed model added to each chat-completions one (the
    simulator replays in every region, through its OpenAI-compatible API only); endpoints that
    speak Anthropic's Messages API keep their Claude models alone."""
    endpoints = []
    for endpoint in base.get("endpoints", []):
        served = list(endpoint.get("models", []))
        if endpoint.get("provider") != "anthropic":
            served += [m for m in models if m not in served]
        endpoints.append({**endpoint, "models": served})
    return {**base, "endpoints": endpoints}


def replay_env(
    folder: Path, state: Path, env: Mapping[str, str]
) -> tuple[dict[str, str], ReplayData]:
    """The variables that put the mesh in replay mode, and what the folder holds; writes the
    endpoints file into state."""
    data = read_replay(folder)
    wired = {"SLUICE_SIMULATOR_REPLAY_DIR": str(folder.resolve())}
    if not env.get("SLUICE_DISPATCHER_ENDPOINTS"):
        base = yaml.safe_load(DEFAULT_ENDPOINTS.read_text())
        target = state / "replay-endpoints.yaml"
        target.write_text(
            "# Written by `sluice up --replay`: the embedded endpoints plus the replayed models.\n"
            + yaml.safe_dump(endpoints_document(base, data.models), sort_keys=False)
        )
        wired["SLUICE_DISPATCHER_ENDPOINTS"] = str(target)
    if not env.get("SLUICE_ROUTER_POLICY"):
        wired["SLUICE_ROUTER_POLICY"] = str(data.policy)
    return wired, data

"""Fidelity: does an OpenAI client get the same shape of answer through Sluice as from the
baseline model directly, and never pay more?

A mixed workload (plain chat, JSON mode, json_schema, tool calls, tool round trips, a small
max_tokens, streaming with and without tools) goes through the running mesh's front door with
the official `openai` SDK, and the same request goes straight to the baseline model (gpt-4o) on
the same simulator. Per request class it prints:

- the share of answers whose shape matches the direct call's: choices, finish reasons, content
  present or null, the functions called and whether their arguments parse, JSON validity and
  schema fit;
- Sluice's cost against the direct call's cost (the baseline's catalogue price on the direct
  call's own usage), and the cost avoided.

The last line is one JSON object with `shape_match_rate` (target 1.0),
`classes_costing_more_than_baseline` (target 0) and `cost_ratio_vs_baseline`.

    .venv/bin/python -m benchmarks.fidelity [--per-class 24]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import openai
from openai.types.chat import ChatCompletion

from benchmarks.common import DEFAULT_DATA, hash_order, markdown_table
from shared.mesh import Mesh, free_ports
from shared.pricing import PriceCatalogue, TokenUsage, load_catalogue

BASELINE = "gpt-4o"
CATALOGUE = Path(__file__).resolve().parent.parent / "shared" / "catalogue" / "prices.yaml"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
CARD = {
    "type": "function",
    "function": {
        "name": "block_card",
        "description": "Block a lost or stolen bank card",
        "parameters": {
            "type": "object",
            "properties": {"card_last_digits": {"type": "string"}, "reason": {"type": "string"}},
            "required": ["card_last_digits"],
        },
    },
}
SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"type": "string"},
        "urgent": {"type": "boolean"},
        "steps": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["intent", "urgent", "steps"],
    "additionalProperties": False,
}
CITIES = ["Oslo", "Lisbon", "Nairobi", "Lima", "Osaka", "Quebec", "Tbilisi", "Perth"]


@dataclass
class ClassTotals:
    requests: int = 0
    matched: int = 0
    sluice_nano: int = 0
    direct_nano: int = 0
    mismatches: list[str] = field(default_factory=list)


def questions(count: int) -> list[str]:
    """Distinct real customer questions (BANKING77 test split), in a stable hash order."""
    with (DEFAULT_DATA / "banking77" / "test.csv").open(newline="") as handle:
        texts = sorted({row["text"].strip() for row in csv.DictReader(handle)}, key=hash_order)
    return texts[:count]


def workload(per_class: int) -> dict[str, list[dict[str, Any]]]:
    """Request bodies by class; every prompt is distinct, so the cache does not flatter."""
    asked = iter(questions(per_class * 8))
    cities = [CITIES[i % len(CITIES)] for i in range(per_class)]
    classes: dict[str, list[dict[str, Any]]] = {
        "plain": [{"messages": user(next(asked))} for _ in range(per_class)],
        "json_object": [
            {
                "messages": user(f"Answer in JSON: {next(asked)}"),
                "response_format": {"type": "json_object"},
            }
            for _ in range(per_class)
        ],
        "json_schema": [
            {
                "messages": user(next(asked)),
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "triage", "schema": SCHEMA, "strict": True},
                },
            }
            for _ in range(per_class)
        ],
        "tools": [
            {
                "messages": user(f"What is the weather in {city} today, in celsius? ({n})"),
                "tools": [WEATHER, CARD],
            }
            for n, city in enumerate(cities)
        ],
        "tool_round_trip": [round_trip(city, n) for n, city in enumerate(cities)],
        "small_max_tokens": [{"messages": user(next(asked)), "max_tokens": 5} for _ in cities],
        "stream": [{"messages": user(next(asked)), "stream": True} for _ in cities],
        "stream_tools": [
            {
                "messages": user(f"Weather in {city} please, fahrenheit ({n})"),
                "tools": [WEATHER],
                "stream": True,
            }
            for n, city in enumerate(cities)
        ],
    }
    return classes


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def round_trip(city: str, n: int) -> dict[str, Any]:
    call_id = f"call_{n:04d}"
    arguments = json.dumps({"city": city, "unit": "celsius"})
    return {
        "messages": [
            {"role": "user", "content": f"Is it warm in {city}? ({n})"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": '{"temp_c": 21, "sky": "clear"}'},
        ],
        "tools": [WEATHER],
    }


def shape(completion: ChatCompletion, body: dict[str, Any]) -> tuple[Any, ...]:
    """What a client's code depends on, per choice."""
    response_format = body.get("response_format") or {}
    per_choice = []
    for choice in completion.choices:
        message = choice.message
        calls = tuple(
            (call.function.name, _parses(call.function.arguments))
            for call in message.tool_calls or ()
            if call.type == "function"
        )
        per_choice.append(
            (
                choice.finish_reason,
                message.content is None,
                calls,
                bool(message.refusal),
                _json_fit(message.content, response_format, choice.finish_reason),
            )
        )
    return (len(completion.choices), tuple(per_choice))


def _parses(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _json_fit(content: str | None, response_format: dict[str, Any], finish: str) -> str:
    kind = response_format.get("type")
    if kind not in ("json_object", "json_schema") or content is None or finish == "length":
        return "n/a"
    try:
        document = json.loads(content)
    except ValueError:
        return "not json"
    if kind == "json_schema":
        schema = response_format["json_schema"]["schema"]
        return "fits" if jsonschema.Draft202012Validator(schema).is_valid(document) else "misfit"
    return "object" if isinstance(document, dict) else "not object"


def complete(client: openai.OpenAI, body: dict[str, Any], model: str) -> tuple[ChatCompletion, Any]:
    """The completion (streams reassembled by the SDK's own helper), and Sluice's extras."""
    request = {key: value for key, value in body.items() if key != "stream"}
    if not body.get("stream"):
        raw = client.chat.completions.with_raw_response.create(model=model, **request)
        completion = raw.parse()
        return completion, (completion.model_extra or {}).get("sluice")
    extras: dict[str, Any] = {}
    with client.chat.completions.stream(
        model=model, stream_options={"include_usage": True}, **request
    ) as stream:
        for event in stream:
            chunk = getattr(event, "chunk", None)
            if chunk is not None and (chunk.model_extra or {}).get("sluice"):
                extras = chunk.model_extra["sluice"]
        return stream.get_final_completion(), extras or None


@contextmanager
def running_mesh() -> Iterator[Mesh]:
    with tempfile.TemporaryDirectory(prefix="sluice-fidelity-") as state:
        root = Path(state)
        env = {
            "SLUICE_CACHE_DATA_DIR": str(root / "cache"),
            "SLUICE_BATCHER_DATA_DIR": str(root / "batcher"),
            "SLUICE_SHUTDOWN_ANNOUNCE_S": "0.2",
        }
        mesh = Mesh.plan(free_ports(), root / "logs", env)
        try:
            mesh.start_all()
            mesh.wait_ready(timeout_s=300)
            yield mesh
        finally:
            mesh.stop_all()


def run(per_class: int) -> dict[str, ClassTotals]:
    catalogue = load_catalogue(CATALOGUE)
    totals: dict[str, ClassTotals] = {}
    with running_mesh() as mesh:
        sluice = openai.OpenAI(base_url=f"http://{mesh.address('router_http')}/v1", api_key="dev")
        direct = openai.OpenAI(
            base_url=f"http://{mesh.address('simulator')}/us-east/v1", api_key="unused"
        )
        for name, bodies in workload(per_class).items():
            class_totals = totals.setdefault(name, ClassTotals())
            for body in bodies:
                measure(class_totals, body, sluice, direct, lambda u: baseline(catalogue, u))
    return totals


def baseline(catalogue: PriceCatalogue, usage: Any) -> int:
    return catalogue.cost_nano_usd(
        BASELINE, TokenUsage(usage.prompt_tokens, usage.completion_tokens)
    )


def measure(
    totals: ClassTotals,
    body: dict[str, Any],
    sluice: openai.OpenAI,
    direct: openai.OpenAI,
    price: Callable[[Any], int],
) -> None:
    ours, extras = complete(sluice, body, "auto")
    theirs, _ = complete(direct, body, BASELINE)
    totals.requests += 1
    if shape(ours, body) == shape(theirs, body):
        totals.matched += 1
    elif len(totals.mismatches) < 3:
        totals.mismatches.append(f"{shape(ours, body)} vs {shape(theirs, body)}")
    totals.sluice_nano += round(float((extras or {}).get("cost_usd", 0.0)) * 1e9)
    totals.direct_nano += price(theirs.usage)


def report(totals: dict[str, ClassTotals]) -> dict[str, Any]:
    rows = []
    for name, t in totals.items():
        ratio = t.sluice_nano / t.direct_nano if t.direct_nano else 0.0
        rows.append(
            [
                name,
                t.requests,
                f"{t.matched / max(1, t.requests):.3f}",
                f"${t.sluice_nano / 1e9:.6f}",
                f"${t.direct_nano / 1e9:.6f}",
                f"{ratio:.3f}",
                f"${(t.direct_nano - t.sluice_nano) / 1e9:.6f}",
            ]
        )
    headers = ["class", "n", "shape match", "sluice", "direct gpt-4o", "ratio", "avoided"]
    print(markdown_table(headers, rows))
    for name, t in totals.items():
        for mismatch in t.mismatches:
            print(f"mismatch in {name}: {mismatch}", file=sys.stderr)
    requests = sum(t.requests for t in totals.values())
    sluice_cost = sum(t.sluice_nano for t in totals.values())
    direct_cost = sum(t.direct_nano for t in totals.values())
    return {
        "shape_match_rate": round(sum(t.matched for t in totals.values()) / max(1, requests), 4),
        "classes_costing_more_than_baseline": sum(
            1 for t in totals.values() if t.sluice_nano > t.direct_nano
        ),
        "cost_ratio_vs_baseline": round(sluice_cost / max(1, direct_cost), 4),
        "cost_avoided_usd": round((direct_cost - sluice_cost) / 1e9, 9),
        "requests": requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=24)
    args = parser.parse_args()
    print(json.dumps(report(run(args.per_class))))


if __name__ == "__main__":
    main()

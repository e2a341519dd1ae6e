"""The issue-16 hooks of cache_quality.py's JSON line: `long_prompt_wrong_hits` and
`bound_violations` are counted by their suites through a cache service (here one built from
the same settings in this process, over a hashing embedder), not left null."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from sluice.cache.v1 import cache_service_pb2 as pb

from benchmarks.cache_bound import held_back, parse_args, report
from benchmarks.cache_bound_service import BOUNDS, Tally
from benchmarks.cache_long_prompts import cases, replay_cases
from benchmarks.cache_quality_lookalike import issue16_hooks
from services.cache.verifiers.replay import Probe, Space
from tests.unit.benchmarks.cache_server import threaded_cache


def arguments(data: Path, *, skip: bool = False) -> argparse.Namespace:
    return argparse.Namespace(
        data=str(data), skip_suites=skip, service_repo=".", log_dir=str(data / "logs")
    )


def printed(out: str, prefix: str) -> dict[str, Any]:
    [line] = [line for line in out.splitlines() if line.startswith(prefix)]
    figures: dict[str, Any] = json.loads(line[len(prefix) :])
    return figures


def test_the_long_prompt_hook_counts_the_suite_through_the_service(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hooks = issue16_hooks(threaded_cache)
    assert hooks["long_prompt_wrong_hits"](arguments(data)) == 0
    figures = printed(capsys.readouterr().out, "long-prompt suite, through the service: ")
    # 2 documents x 4 lengths x 3 positions; every re-asked request was served.
    assert figures["cases"] == 24
    assert figures["same_question_hits"] == 24
    assert figures["reworded_end_hits"] == figures["reworded_end_cases"] == 8


class ServesEverything:
    """A cache that answers every lookup with its one stored answer."""

    async def Store(self, request: pb.StoreRequest, **options: float) -> pb.StoreResponse:
        return pb.StoreResponse(entry_id="e1")

    async def Lookup(self, request: pb.LookupRequest, **options: float) -> pb.LookupResponse:
        return pb.LookupResponse(kind=pb.HIT_KIND_SEMANTIC, content="A", entry_id="e1")


async def test_every_other_question_served_is_counted_as_a_wrong_hit(data: Path) -> None:
    suite = list(cases(data, None))
    figures = await replay_cases(ServesEverything(), suite)  # type: ignore[arg-type]
    assert figures["wrong"] == len(suite) == 24


def test_the_bound_hook_replays_every_bound_through_the_service(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hooks = issue16_hooks(threaded_cache)
    assert hooks["bound_violations"](arguments(data)) == 0
    figures = printed(capsys.readouterr().out, "error-bound replay: ")
    assert figures["via"] == "through the service"
    assert sorted(figures["bounds"]) == sorted(f"{b:g}" for b in BOUNDS)
    spaces = held_back(parse_args(["--data", str(data)]))
    assert figures["lookups"] == sum(len(s.probes) for s in spaces.values()) > 0


def test_a_bound_whose_served_wrong_rate_exceeds_it_is_a_violation() -> None:
    space = Space("qqp", {"q": "A"}, [Probe("p", "A", False)])
    tallies = {
        rate: {"qqp": Tally(lookups=100, should_hit=100, served=100, wrong=wrong)}
        for rate, wrong in zip(BOUNDS, (1, 1, 1, 6), strict=True)
    }
    figures = report({"qqp": space}, tallies, [(0.9, True)], 0.1, "through the service")
    # 1% served wrong exceeds 0.5% (not 1% or 2%); 6% exceeds 5%.
    assert figures["bound_violations"] == 2


def test_skipped_suites_are_null_not_zero(data: Path) -> None:
    hooks = issue16_hooks(threaded_cache)
    assert {name: hook(arguments(data, skip=True)) for name, hook in hooks.items()} == {
        "long_prompt_wrong_hits": None,
        "bound_violations": None,
    }

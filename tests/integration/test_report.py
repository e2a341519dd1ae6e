"""`sluice report` against a real mesh: its totals grow by exactly what the responses said."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from shared.mesh import Mesh
from tests.support import DEV_KEY, ask, router_stub

pytestmark = pytest.mark.integration
SLUICE = [sys.executable, "-m", "shared.cli.main"]


def report(mesh: Mesh, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SLUICE, "report", "--router", mesh.address("router"), "--days", "1", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
        check=False,
    )


def figures(mesh: Mesh) -> dict[str, Any]:
    done = report(mesh, "--json")
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def _by(document: dict[str, Any], dimension: str) -> dict[str, dict[str, int]]:
    return {row[dimension]: row for row in document["by"][dimension]}


async def test_report_totals_grow_by_the_responses_costs_and_baselines(
    channel: grpc.aio.Channel, mesh: Mesh, tmp_path: Path
) -> None:
    before = figures(mesh)
    tag = uuid.uuid4().hex[:8]
    prompts = [
        f"Summarise the CAP theorem ({tag})",
        f"Summarise the CAP theorem ({tag})",  # the same again: an exact cache hit
        f"Write a limerick [sim:refuse] ({tag})",  # the first tier refuses: an escalation
    ]
    responses = []
    for prompt in prompts:
        stub = router_stub(channel)
        responses.append(await stub.Complete(ask(prompt), metadata=DEV_KEY, timeout=30))
    assert [r.cache_hit for r in responses] == [False, True, False]
    assert responses[2].tier > 1, "the refusal escalated"
    after = figures(mesh)

    def grew(key: str) -> int:
        return int(after["totals"][key]) - int(before["totals"][key])

    assert grew("requests") == 3 and grew("cache_hits") == 1
    assert grew("cost_nano_usd") == sum(r.cost.total_cost_nano_usd for r in responses)
    assert grew("baseline_cost_nano_usd") == sum(r.cost.baseline_cost_nano_usd for r in responses)
    saved = sum(after["stage_savings_nano_usd"].values()) - sum(
        before["stage_savings_nano_usd"].values()
    )
    assert saved == sum(r.cost.cost_avoided_nano_usd for r in responses)
    hit_saving = after["stage_savings_nano_usd"]["cache"] - before["stage_savings_nano_usd"].get(
        "cache", 0
    )
    assert hit_saving == responses[1].cost.baseline_cost_nano_usd
    escalated = _by(after, "tier")[str(responses[2].tier)]
    was = _by(before, "tier").get(str(responses[2].tier), {"cost_nano_usd": 0})
    assert (
        escalated["cost_nano_usd"] - was["cost_nano_usd"] == responses[2].cost.total_cost_nano_usd
    )

    page = tmp_path / "report.html"
    done = report(mesh, "--html", str(page))
    assert done.returncode == 0, done.stderr
    assert "requests" in done.stdout and f"wrote {page}" in done.stdout
    assert page.read_text().count('class="cost-bar"') == 1


def test_report_names_a_bad_day_and_a_key_that_may_not_see_every_tenant(mesh: Mesh) -> None:
    bad = report(mesh, "--from", "14/03/2026")
    assert bad.returncode == 1
    assert "INVALID_ARGUMENT: first_day '14/03/2026' is not a day as YYYY-MM-DD" in bad.stderr
    # The test mesh names no admin tenant, so the dev key reads only its own usage.
    wide = report(mesh, "--all-tenants")
    assert wide.returncode == 1
    assert "PERMISSION_DENIED: tenant 'dev' may read only its own usage" in wide.stderr

"""cache_speed_verifier's "new default" row runs the verifier the cache service defaults to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import cache_speed_verifier
from services.cache.config import Settings


def test_the_new_default_row_runs_the_services_default_verifier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[tuple[str, float]] = []

    def service_hits(
        verify: str, floor: float, pairs: list[tuple[str, str]], logs: Path
    ) -> dict[str, Any]:
        started.append((verify, floor))
        return {"verify": verify, "min_similarity": floor, "semantic_hits": 0}

    monkeypatch.setattr(cache_speed_verifier, "service_hits", service_hits)
    monkeypatch.setattr(cache_speed_verifier, "verifier_cost", lambda pairs, repeats: {})
    result = cache_speed_verifier.verifier_speed(quick=True)
    defaults = Settings.from_env({})
    assert started == [cache_speed_verifier.OLD, (defaults.verify, defaults.min_similarity)]
    assert result["new_default"]["verify"] == "banded"

"""Run-time state of one simulator app: counters and admin patches to region settings.

One SimulatorState is created per app by build_app, so two apps in one process (two tests, or
two simulators) never share counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.simulator.faults import FaultKind
from services.simulator.scenario import RegionSpec


@dataclass
class Counts:
    """Chat requests seen by one region or one model."""

    received: int = 0
    answered: int = 0
    # 400 and 404 replies: malformed bodies, unknown models, prompts with no recording.
    rejected: int = 0
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FaultKind, 0))
    # Answers drawn into the slow tail (slow_rate).
    slowed: int = 0
    # Streams the client closed before their last event (a cancelled hedge, a caller gone).
    cancelled: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "answered": self.answered,
            "rejected": self.rejected,
            "faults": {str(kind): n for kind, n in self.faults.items()},
            "slowed": self.slowed,
            "cancelled": self.cancelled,
        }


class SimulatorState:
    """Per-region and per-model counters, and the region settings in force."""

    def __init__(self, regions: Mapping[str, RegionSpec], models: list[str]) -> None:
        self._configured = dict(regions)
        self._models = list(models)
        self.regions: dict[str, RegionSpec] = {}
        self._by_region: dict[str, Counts] = {}
        self._by_model: dict[str, Counts] = {}
        self.reset()

    def reset(self) -> None:
        """Zeroes every counter and drops every admin patch."""
        self.regions = dict(self._configured)
        self._by_region = {name: Counts() for name in self._configured}
        self._by_model = {name: Counts() for name in self._models}

    def patch_region(self, region: str, patch: Mapping[str, Any]) -> RegionSpec:
        """Applies a validated patch on top of the region's current settings."""
        self.regions[region] = self.regions[region].patched(patch)
        return self.regions[region]

    def _counts(self, region: str, model: str | None) -> list[Counts]:
        found = [self._by_region[region]]
        if model is not None and model in self._by_model:
            found.append(self._by_model[model])
        return found

    def received(self, region: str, model: str | None) -> None:
        for counts in self._counts(region, model):
            counts.received += 1

    def answered(self, region: str, model: str) -> None:
        for counts in self._counts(region, model):
            counts.answered += 1

    def rejected(self, region: str, model: str | None) -> None:
        for counts in self._counts(region, model):
            counts.rejected += 1

    def slowed(self, region: str, model: str) -> None:
        for counts in self._counts(region, model):
            counts.slowed += 1

    def cancelled(self, region: str, model: str) -> None:
        for counts in self._counts(region, model):
            counts.cancelled += 1

    def fault(self, region: str, model: str | None, kind: FaultKind) -> None:
        for counts in self._counts(region, model):
            counts.faults[kind] += 1

    def stats_json(self) -> dict[str, Any]:
        return {
            "regions": {name: counts.as_json() for name, counts in self._by_region.items()},
            "models": {name: counts.as_json() for name, counts in self._by_model.items()},
        }

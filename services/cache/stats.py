"""Per-tenant counters of what the cache did since the process started."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum


class Removal(StrEnum):
    """Why entries left the cache; each reason has its own counter."""

    EVICTED = "evicted"
    EXPIRED = "expired"
    INVALIDATED = "invalidated"
    # Replaced by a newer store of the same exact request, or removed by another replica.
    REPLACED = "replaced"
    # Served and reported wrong (ReportHit); counted as verification_failures by the caller.
    REPORTED_WRONG = "reported_wrong"


@dataclass
class Counters:
    exact_hits: int = 0
    semantic_hits: int = 0
    misses: int = 0
    verification_rejects: int = 0
    evictions: int = 0
    expirations: int = 0
    invalidations: int = 0
    skipped_bad_vectors: int = 0
    # Served hits reported wrong through ReportHit.
    verification_failures: int = 0
    # Shadow verdicts counted for calibration, and those that found the rejected answer right.
    shadow_reports: int = 0
    shadow_agreements: int = 0

    def add(self, other: Counters) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


@dataclass(frozen=True)
class CacheStats:
    """Counters plus the current size, for one tenant or all of them."""

    tenant_id: str | None
    counters: Counters
    entries: int
    nbytes: int


class StatsBook:
    """Counters per tenant; totals are their sum."""

    def __init__(self) -> None:
        self._tenants: defaultdict[str, Counters] = defaultdict(Counters)

    def tenant(self, tenant_id: str) -> Counters:
        return self._tenants[tenant_id]

    def removed(self, tenant_id: str, reason: Removal) -> None:
        counters = self._tenants[tenant_id]
        if reason is Removal.EVICTED:
            counters.evictions += 1
        elif reason is Removal.EXPIRED:
            counters.expirations += 1
        elif reason is Removal.INVALIDATED:
            counters.invalidations += 1

    def snapshot(self, tenant_id: str | None) -> Counters:
        """A copy of one tenant's counters, or of the totals when tenant_id is None."""
        if tenant_id is not None:
            return dataclasses.replace(self._tenants.get(tenant_id) or Counters())
        total = Counters()
        for counters in self._tenants.values():
            total.add(counters)
        return total

"""Policy rollout: a candidate policy serves a sticky share of traffic (canary), or is
evaluated beside the live one on every request without changing any answer (shadow)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from services.router.policy import Policy, PolicyError


class RolloutMode(StrEnum):
    CANARY = "canary"
    SHADOW = "shadow"


@dataclass(frozen=True)
class Rollout:
    candidate: Policy
    mode: RolloutMode
    # Share of traffic, in percent, that the candidate serves in canary mode.
    percent: float = 0.0


def parse_rollout_spec(spec: str) -> tuple[RolloutMode, float] | None:
    """Parses SLUICE_ROUTER_ROLLOUT: "", "shadow" or "canary:<percent>"."""
    if not spec:
        return None
    mode, _, amount = spec.partition(":")
    if mode == RolloutMode.SHADOW and not amount:
        return RolloutMode.SHADOW, 0.0
    if mode == RolloutMode.CANARY:
        try:
            percent = float(amount)
        except ValueError:
            percent = -1.0
        if 0 <= percent <= 100:
            return RolloutMode.CANARY, percent
    raise PolicyError(f"SLUICE_ROUTER_ROLLOUT={spec!r}: use 'shadow' or 'canary:<0-100>'")


def sticky_bucket(parts: Sequence[str]) -> float:
    """A stable position in [0, 100) for a request, so the same request always lands on the
    same side of a canary split."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


@dataclass(frozen=True)
class Selection:
    serving: Policy
    shadow: Policy | None = None


class PolicySelector:
    def __init__(self, primary: Policy, rollout: Rollout | None = None) -> None:
        self._primary = primary
        self._rollout = rollout

    @property
    def primary(self) -> Policy:
        return self._primary

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The live policy, then the candidate if one is rolled out."""
        rollout = self._rollout
        return (self._primary,) if rollout is None else (self._primary, rollout.candidate)

    def select(self, sticky_parts: Callable[[], Sequence[str]]) -> Selection:
        """The policy serving a request; `sticky_parts` (what places it in a canary split)
        is called only when a canary runs."""
        rollout = self._rollout
        if rollout is None:
            return Selection(self._primary)
        if rollout.mode is RolloutMode.SHADOW:
            return Selection(self._primary, rollout.candidate)
        if sticky_bucket(sticky_parts()) < rollout.percent:
            return Selection(rollout.candidate)
        return Selection(self._primary)

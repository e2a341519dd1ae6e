"""The optional `compression:` block of a model class in the policy YAML.

    compression:
      strategy: extractive     # extractive | dedup | abstractive | history | off
      target_ratio: 0.25       # fraction of the context kept, in (0, 1]
      min_tokens: 2000         # prompts shorter than this are sent as they are
      keep_last_turns: 4       # history: turns kept verbatim, counted from the end

Every key is optional; an absent one leaves the compressor service's default. Errors name the
field and why, like the rest of the policy (policy.py adds the file).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

STRATEGIES = ("extractive", "dedup", "abstractive", "history", "off")
_KEYS = frozenset({"strategy", "target_ratio", "min_tokens", "keep_last_turns"})


@dataclass(frozen=True)
class CompressionPolicy:
    """How a model class's prompts are compressed; zero values mean the service default."""

    # "" for the service default; "off" sends prompts uncompressed without asking.
    strategy: str = ""
    target_ratio: float = 0.0
    min_tokens: int = 0
    keep_last_turns: int = 0

    @property
    def enabled(self) -> bool:
        return self.strategy != "off"


def parse_compression(raw: Any, where: str) -> CompressionPolicy | None:
    """The parsed block, None when absent; raises PolicyError naming `where` and the field."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        _fail(f"{where} must be a mapping with keys {', '.join(sorted(_KEYS))}")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        _fail(f"{where}: unknown keys {unknown}; known: {sorted(_KEYS)}")
    strategy = raw.get("strategy", "")
    if strategy != "" and strategy not in STRATEGIES:
        _fail(f"{where}.strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    ratio = raw.get("target_ratio", 0.0)
    is_number = isinstance(ratio, int | float) and not isinstance(ratio, bool)
    # Written so that NaN fails too: it is not within any range.
    if "target_ratio" in raw and not (is_number and 0 < ratio <= 1):
        _fail(f"{where}.target_ratio must be a number within (0, 1], not {ratio!r}")
    return CompressionPolicy(
        strategy=strategy,
        target_ratio=float(ratio),
        min_tokens=_count(raw, "min_tokens", where),
        keep_last_turns=_count(raw, "keep_last_turns", where),
    )


def _count(raw: Mapping[str, Any], key: str, where: str) -> int:
    value = raw.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail(f"{where}.{key} must be a non-negative whole number, not {value!r}")
    return int(value)


def _fail(message: str) -> NoReturn:
    # Imported here: policy.py imports this module to parse the block, so a module-level import
    # the other way round would be circular.
    from services.router.policy import PolicyError

    raise PolicyError(message)

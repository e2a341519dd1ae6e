"""Cache settings from SLUICE_CACHE_* environment variables."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import SettingsError, env_address, env_float, env_int, env_str

# Calibrated on the real all-MiniLM-L6-v2 vectors (see README.md, "Calibration"): paraphrases
# of a question score 0.91-0.98 against it, while the same question about another entity or
# attribute scores 0.66-0.77 and a narrower variant ("... in 1700?") 0.87. On a 3,000-pair QQP
# sample, 0.90 keeps 42% of true paraphrases while 18% of hits are wrong; lower thresholds buy
# recall with more wrong answers, and until hits are verified (a later stage) a wrong answer
# costs more than a miss, so the default leans to precision.
DEFAULT_MIN_SIMILARITY = 0.90
DEFAULT_TTL_S = 86_400.0
# 10k entries x 384 float32 = 15 MB of vectors per namespace, and a flat search over them takes
# ~0.3 ms (DESIGN.md figures), cheap enough to run on the event loop.
DEFAULT_MAX_ENTRIES = 10_000
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Settings:
    listen: str
    # Cosine similarity in [0, 1] a semantic match needs to count as a hit.
    min_similarity: float
    # Lifetime of an entry whose Store request sets no TTL.
    ttl_s: float
    # Entries kept per namespace before the least recently used one is evicted.
    max_entries: int
    # torch intra-op threads for the embedding model; 1 because two threads collapse when the
    # other core of a 2-core node is busy (DESIGN.md, measured on this machine kind).
    embed_threads: int
    log_level: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            listen=env_address(env, "SLUICE_CACHE_LISTEN", "127.0.0.1:50052"),
            min_similarity=_similarity(env),
            ttl_s=_positive(
                env_float(env, "SLUICE_CACHE_TTL_S", DEFAULT_TTL_S), "SLUICE_CACHE_TTL_S"
            ),
            max_entries=env_int(env, "SLUICE_CACHE_MAX_ENTRIES", DEFAULT_MAX_ENTRIES, minimum=1),
            embed_threads=env_int(env, "SLUICE_CACHE_EMBED_THREADS", 1, minimum=1),
            log_level=_log_level(env),
        )


def _similarity(env: Mapping[str, str]) -> float:
    name = "SLUICE_CACHE_MIN_SIMILARITY"
    value = env_float(env, name, DEFAULT_MIN_SIMILARITY, minimum=0.0, maximum=1.0)
    # env_float's range check lets NaN through (every comparison with it is false).
    if math.isnan(value):
        raise SettingsError(f"{name}=nan must be within [0.0, 1.0]")
    return value


def _positive(value: float, name: str) -> float:
    if not value > 0:
        raise SettingsError(f"{name}={value} must be greater than 0")
    return value


def _log_level(env: Mapping[str, str]) -> str:
    # Checked here so that a typo fails at start-up with the variable's name, not as a
    # traceback from logging.setLevel inside serve().
    level = env_str(env, "SLUICE_LOG_LEVEL", "INFO").upper()
    if level not in _LOG_LEVELS:
        raise SettingsError(f"SLUICE_LOG_LEVEL={level!r} must be one of {', '.join(_LOG_LEVELS)}")
    return level

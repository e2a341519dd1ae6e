"""Compressor settings from SLUICE_COMPRESSOR_* environment variables, validated at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.pricing import DEFAULT_CATALOGUE
from shared.settings import SettingsError, env_address, env_float, env_int, env_path, env_str

_LOG_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


@dataclass(frozen=True)
class Settings:
    listen: str
    # Prompts with fewer tokens than this pass through untouched: there is little to cut, and
    # every cut risks dropping what the answer needs.
    min_tokens: int
    # Fraction of the compressible (context) tokens kept, in (0, 1], when a request names none.
    target_ratio: float
    # torch intra-op threads for the embedding model; more than the pod's cores hurts latency.
    embed_threads: int
    # Vectors of recently seen chunks kept in memory (~1.6 KB each): follow-up turns resend the
    # same documents, and a remembered chunk skips the model. 0 turns the cache off.
    embed_cache_size: int
    # Price catalogue used to price a saving at the target model's input price.
    catalogue_file: Path
    log_level: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        ratio = env_float(env, "SLUICE_COMPRESSOR_TARGET_RATIO", 0.5, minimum=0.0, maximum=1.0)
        if not 0.0 < ratio <= 1.0:  # also rejects "nan", which passes the range check
            raise SettingsError(f"SLUICE_COMPRESSOR_TARGET_RATIO={ratio} must be within (0, 1]")
        log_level = env_str(env, "SLUICE_LOG_LEVEL", "INFO").upper()
        if log_level not in _LOG_LEVELS:
            raise SettingsError(
                f"SLUICE_LOG_LEVEL={log_level!r} is not one of {', '.join(sorted(_LOG_LEVELS))}"
            )
        return cls(
            listen=env_address(env, "SLUICE_COMPRESSOR_LISTEN", "127.0.0.1:50053"),
            min_tokens=env_int(env, "SLUICE_COMPRESSOR_MIN_TOKENS", 1500, minimum=0),
            target_ratio=ratio,
            embed_threads=env_int(env, "SLUICE_COMPRESSOR_EMBED_THREADS", 1, minimum=1),
            embed_cache_size=env_int(env, "SLUICE_COMPRESSOR_EMBED_CACHE_SIZE", 10_000, minimum=0),
            catalogue_file=env_path(
                env, "SLUICE_COMPRESSOR_CATALOGUE", DEFAULT_CATALOGUE, must_exist=True
            ),
            log_level=log_level,
        )

"""Dispatcher settings from SLUICE_DISPATCHER_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.pricing import DEFAULT_CATALOGUE
from shared.settings import env_address, env_float, env_int, env_path, env_str

DEFAULT_ENDPOINTS = Path(__file__).resolve().parent / "endpoints.yaml"


@dataclass(frozen=True)
class Settings:
    listen: str
    endpoints_file: Path
    catalogue_file: Path
    local_region: str
    # Upper bound on one upstream attempt; the caller's gRPC deadline shortens it further.
    attempt_timeout_s: float
    # Sliding window of latency samples kept per endpoint for the percentiles.
    latency_window: int
    # Consecutive failures after which an endpoint is ejected, and for how long at first.
    eject_after_failures: int
    eject_base_s: float
    log_level: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            listen=env_address(env, "SLUICE_DISPATCHER_LISTEN", "127.0.0.1:50055"),
            endpoints_file=env_path(
                env, "SLUICE_DISPATCHER_ENDPOINTS", DEFAULT_ENDPOINTS, must_exist=True
            ),
            catalogue_file=env_path(
                env, "SLUICE_DISPATCHER_CATALOGUE", DEFAULT_CATALOGUE, must_exist=True
            ),
            local_region=env_str(env, "SLUICE_DISPATCHER_LOCAL_REGION", "us-east"),
            attempt_timeout_s=env_float(
                env, "SLUICE_DISPATCHER_ATTEMPT_TIMEOUT_S", 30.0, minimum=0.05
            ),
            latency_window=env_int(env, "SLUICE_DISPATCHER_LATENCY_WINDOW", 512, minimum=16),
            eject_after_failures=env_int(
                env, "SLUICE_DISPATCHER_EJECT_AFTER_FAILURES", 3, minimum=1
            ),
            eject_base_s=env_float(env, "SLUICE_DISPATCHER_EJECT_BASE_S", 2.0, minimum=0.0),
            log_level=env_str(env, "SLUICE_LOG_LEVEL", "INFO"),
        )

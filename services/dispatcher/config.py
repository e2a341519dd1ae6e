"""Dispatcher settings from SLUICE_DISPATCHER_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.dispatcher.budgets import BudgetPolicy
from services.dispatcher.dispatcher import DispatchPolicy
from shared.metrics import env_metrics_listen
from shared.pricing import DEFAULT_CATALOGUE
from shared.settings import env_address, env_bool, env_float, env_int, env_path, env_str

DEFAULT_ENDPOINTS = Path(__file__).resolve().parent / "endpoints.yaml"
_P = "SLUICE_DISPATCHER_"


@dataclass(frozen=True)
class Settings:
    listen: str
    endpoints_file: Path
    catalogue_file: Path
    # Upstream calls, failover and hedging; see services/dispatcher/README.md for each knob.
    policy: DispatchPolicy
    # Offer HTTP/2 to upstreams (negotiated by ALPN over TLS; cleartext stays HTTP/1.1).
    http2: bool
    log_level: str
    # Where Prometheus reads /metrics; "" serves none (the figures are still counted).
    metrics_listen: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            listen=env_address(env, f"{_P}LISTEN", "127.0.0.1:50055"),
            endpoints_file=env_path(env, f"{_P}ENDPOINTS", DEFAULT_ENDPOINTS, must_exist=True),
            catalogue_file=env_path(env, f"{_P}CATALOGUE", DEFAULT_CATALOGUE, must_exist=True),
            policy=policy_from_env(env),
            http2=env_bool(env, f"{_P}HTTP2", True),
            log_level=env_str(env, "SLUICE_LOG_LEVEL", "INFO"),
            metrics_listen=env_metrics_listen(env, f"{_P}METRICS_LISTEN", "127.0.0.1:0"),
        )


def _budgets_from_env(env: Mapping[str, str]) -> BudgetPolicy:
    return BudgetPolicy(
        retry_ratio=env_float(env, f"{_P}RETRY_BUDGET", 0.2, minimum=0.0, maximum=1.0),
        min_retry_concurrency=env_int(env, f"{_P}MIN_RETRY_CONCURRENCY", 3, minimum=0),
        hedge_ratio=env_float(env, f"{_P}HEDGE_BUDGET", 0.05, minimum=0.0, maximum=1.0),
        window_s=env_float(env, f"{_P}BUDGET_WINDOW_S", 10.0, minimum=1.0),
    )


def policy_from_env(env: Mapping[str, str]) -> DispatchPolicy:
    return DispatchPolicy(
        local_region=env_str(env, f"{_P}LOCAL_REGION", "us-east"),
        attempt_timeout_s=env_float(env, f"{_P}ATTEMPT_TIMEOUT_S", 30.0, minimum=0.05),
        latency_window=env_int(env, f"{_P}LATENCY_WINDOW", 512, minimum=16),
        eject_after_failures=env_int(env, f"{_P}EJECT_AFTER_FAILURES", 3, minimum=1),
        eject_base_s=env_float(env, f"{_P}EJECT_BASE_S", 2.0, minimum=0.0),
        eject_max_s=env_float(env, f"{_P}EJECT_MAX_S", 60.0, minimum=0.0),
        max_attempts=env_int(env, f"{_P}MAX_ATTEMPTS", 3, minimum=1),
        hedging=env_bool(env, f"{_P}HEDGING", True),
        hedge_quantile=env_float(env, f"{_P}HEDGE_QUANTILE", 95.0, minimum=50.0, maximum=100.0),
        hedge_min_delay_s=env_float(env, f"{_P}HEDGE_MIN_DELAY_S", 0.05, minimum=0.0),
        hedge_min_samples=env_int(env, f"{_P}HEDGE_MIN_SAMPLES", 32, minimum=1),
        budgets=_budgets_from_env(env),
    )

"""Batcher settings from SLUICE_BATCHER_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.metrics import env_metrics_listen
from shared.pricing import DEFAULT_CATALOGUE
from shared.settings import env_address, env_float, env_int, env_path, env_str

# The dispatcher's endpoints file is the one place that says where each provider lives; the
# batcher reads the same file so Batch API jobs go to the providers interactive calls go to.
DEFAULT_ENDPOINTS = Path(__file__).resolve().parent.parent / "dispatcher" / "endpoints.yaml"
_P = "SLUICE_BATCHER_"


@dataclass(frozen=True)
class PackSettings:
    """When small calls sharing a system prompt are packed into one upstream call."""

    # How long the first packable call of a group waits for others; 0 turns packing off.
    # Calls opt in one by one (ExecuteRequest.packable), so a short window is on by default.
    window_s: float = 0.05
    # Calls per packed upstream call; a full group is sent at once.
    max_items: int = 16
    # Shorter system prompts are not worth packing: the JSON instructions would cost more.
    min_system_tokens: int = 200
    # Time kept back from a call's deadline for the packed call and a possible fallback, so a
    # call whose deadline is nearer than window + reserve is sent without waiting.
    reserve_s: float = 2.0


@dataclass(frozen=True)
class JobSettings:
    """Batch API jobs: where they are stored and how they are driven."""

    data_dir: Path
    endpoints_file: Path
    catalogue_file: Path
    # The region a job runs in when its calls name none.
    region: str
    poll_interval_s: float
    # Longest wait between retries after a provider or network error.
    max_backoff_s: float


@dataclass(frozen=True)
class Settings:
    listen: str
    dispatcher_addr: str
    pack: PackSettings
    jobs: JobSettings
    log_level: str
    # Where Prometheus reads /metrics; "" serves none (the figures are still counted).
    metrics_listen: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            listen=env_address(env, f"{_P}LISTEN", "127.0.0.1:50054"),
            dispatcher_addr=env_address(env, f"{_P}DISPATCHER_ADDR", "127.0.0.1:50055"),
            pack=PackSettings(
                window_s=env_int(env, f"{_P}PACK_WINDOW_MS", 50, minimum=0) / 1000,
                max_items=env_int(env, f"{_P}PACK_MAX_ITEMS", 16, minimum=2),
                min_system_tokens=env_int(env, f"{_P}PACK_MIN_SYSTEM_TOKENS", 200, minimum=0),
                reserve_s=env_int(env, f"{_P}PACK_RESERVE_MS", 2000, minimum=0) / 1000,
            ),
            jobs=JobSettings(
                data_dir=env_path(env, f"{_P}DATA_DIR", Path("var/batcher"), must_exist=False),
                endpoints_file=env_path(env, f"{_P}ENDPOINTS", DEFAULT_ENDPOINTS, must_exist=True),
                catalogue_file=env_path(env, f"{_P}CATALOGUE", DEFAULT_CATALOGUE, must_exist=True),
                region=env_str(env, f"{_P}BATCH_REGION", "us-east"),
                poll_interval_s=env_float(env, f"{_P}POLL_INTERVAL_S", 5.0, minimum=0.05),
                max_backoff_s=env_float(env, f"{_P}MAX_BACKOFF_S", 30.0, minimum=0.05),
            ),
            log_level=env_str(env, "SLUICE_LOG_LEVEL", "INFO"),
            metrics_listen=env_metrics_listen(env, f"{_P}METRICS_LISTEN", "127.0.0.1:0"),
        )

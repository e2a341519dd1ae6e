"""Batcher settings from SLUICE_BATCHER_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import env_address, env_str


@dataclass(frozen=True)
class Settings:
    listen: str
    dispatcher_addr: str
    log_level: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            listen=env_address(env, "SLUICE_BATCHER_LISTEN", "127.0.0.1:50054"),
            dispatcher_addr=env_address(env, "SLUICE_BATCHER_DISPATCHER_ADDR", "127.0.0.1:50055"),
            log_level=env_str(env, "SLUICE_LOG_LEVEL", "INFO"),
        )

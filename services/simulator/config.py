"""Simulator settings from SLUICE_SIMULATOR_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.simulator.scenario import DEFAULT_SCENARIO
from shared.pricing import DEFAULT_CATALOGUE
from shared.settings import SettingsError, env_address, env_float, env_int, env_path, env_str

_REPLAY_ENV = "SLUICE_SIMULATOR_REPLAY_DIR"
_SCALE_ENV = "SLUICE_SIMULATOR_LATENCY_SCALE"


@dataclass(frozen=True)
class Settings:
    listen: str = "127.0.0.1:8700"
    scenario_file: Path = DEFAULT_SCENARIO
    # RouterBench CSV directory; None serves only the scenario's models.
    replay_dir: Path | None = None
    # Overrides the scenario's latency_scale when set; 0 makes every answer immediate.
    latency_scale: float | None = None
    # Seeds fault and latency draws, so a run's fault pattern can be reproduced.
    seed: int = 0
    # Every scenario model must have a price here, so the gateway can cost its answers.
    catalogue_file: Path = DEFAULT_CATALOGUE
    log_level: str = "INFO"

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, argv: Sequence[str] = ()) -> Settings:
        """Reads the environment; an optional single argument is the replay directory."""
        if len(argv) > 1:
            raise SettingsError("usage: python -m services.simulator [REPLAY_DIR]")
        replay_dir = (
            env_path(env, _REPLAY_ENV, Path(), must_exist=True)
            if env.get(_REPLAY_ENV, "").strip()
            else None
        )
        if argv:
            replay_dir = Path(argv[0])
            if not replay_dir.is_dir():
                raise SettingsError(f"replay directory argument {argv[0]!r} is not a directory")
        latency_scale = (
            env_float(env, _SCALE_ENV, 1.0, minimum=0.0)
            if env.get(_SCALE_ENV, "").strip()
            else None
        )
        return cls(
            listen=env_address(env, "SLUICE_SIMULATOR_LISTEN", cls.listen),
            scenario_file=env_path(
                env, "SLUICE_SIMULATOR_CONFIG", DEFAULT_SCENARIO, must_exist=True
            ),
            replay_dir=replay_dir,
            latency_scale=latency_scale,
            seed=env_int(env, "SLUICE_SIMULATOR_SEED", 0),
            catalogue_file=env_path(
                env, "SLUICE_SIMULATOR_CATALOGUE", DEFAULT_CATALOGUE, must_exist=True
            ),
            log_level=env_str(env, "SLUICE_LOG_LEVEL", "INFO"),
        )

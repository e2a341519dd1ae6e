"""Batcher settings: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.batcher.config import DEFAULT_ENDPOINTS, Settings
from shared.settings import SettingsError


def test_defaults_pack_briefly_and_keep_jobs_under_var():
    settings = Settings.from_env({})
    assert settings.pack.window_s == 0.05 and settings.pack.max_items == 16
    assert settings.jobs.data_dir == Path("var/batcher")
    assert settings.jobs.endpoints_file == DEFAULT_ENDPOINTS and DEFAULT_ENDPOINTS.exists()


def test_values_are_read_from_the_environment(tmp_path: Path):
    settings = Settings.from_env(
        {
            "SLUICE_BATCHER_PACK_WINDOW_MS": "0",
            "SLUICE_BATCHER_PACK_RESERVE_MS": "500",
            "SLUICE_BATCHER_DATA_DIR": str(tmp_path),
            "SLUICE_BATCHER_POLL_INTERVAL_S": "0.5",
        }
    )
    assert settings.pack.window_s == 0 and settings.pack.reserve_s == 0.5
    assert settings.jobs.data_dir == tmp_path and settings.jobs.poll_interval_s == 0.5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SLUICE_BATCHER_PACK_WINDOW_MS", "soon"),
        ("SLUICE_BATCHER_PACK_MAX_ITEMS", "1"),
        ("SLUICE_BATCHER_ENDPOINTS", "/no/such/file.yaml"),
        ("SLUICE_BATCHER_POLL_INTERVAL_S", "0"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str):
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})

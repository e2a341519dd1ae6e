"""Settings parse SLUICE_COMPRESSOR_* and fail with the variable's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.compressor.config import Settings
from services.compressor.server import main
from shared.pricing import DEFAULT_CATALOGUE
from shared.settings import SettingsError


def test_defaults() -> None:
    assert Settings.from_env({}) == Settings(
        listen="127.0.0.1:50053",
        min_tokens=1500,
        target_ratio=0.5,
        embed_threads=1,
        embed_cache_size=10_000,
        catalogue_file=DEFAULT_CATALOGUE,
        log_level="INFO",
    )


def test_values_from_env(tmp_path: Path) -> None:
    catalogue = tmp_path / "prices.yaml"
    catalogue.write_text("models: {}\n")
    settings = Settings.from_env(
        {
            "SLUICE_COMPRESSOR_LISTEN": "0.0.0.0:6000",
            "SLUICE_COMPRESSOR_MIN_TOKENS": "0",
            "SLUICE_COMPRESSOR_TARGET_RATIO": "1",
            "SLUICE_COMPRESSOR_EMBED_THREADS": "2",
            "SLUICE_COMPRESSOR_EMBED_CACHE_SIZE": "0",
            "SLUICE_COMPRESSOR_CATALOGUE": str(catalogue),
            "SLUICE_LOG_LEVEL": "debug",
        }
    )
    assert settings == Settings("0.0.0.0:6000", 0, 1.0, 2, 0, catalogue, "DEBUG")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SLUICE_COMPRESSOR_LISTEN", "nowhere"),
        ("SLUICE_COMPRESSOR_MIN_TOKENS", "many"),
        ("SLUICE_COMPRESSOR_MIN_TOKENS", "-1"),
        ("SLUICE_COMPRESSOR_TARGET_RATIO", "0"),
        ("SLUICE_COMPRESSOR_TARGET_RATIO", "1.5"),
        ("SLUICE_COMPRESSOR_TARGET_RATIO", "nan"),
        ("SLUICE_COMPRESSOR_TARGET_RATIO", "half"),
        ("SLUICE_COMPRESSOR_EMBED_THREADS", "0"),
        ("SLUICE_COMPRESSOR_EMBED_CACHE_SIZE", "-5"),
        ("SLUICE_COMPRESSOR_CATALOGUE", "/no/such/prices.yaml"),
        ("SLUICE_LOG_LEVEL", "chatty"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_main_exits_2_with_the_message_on_bad_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main({"SLUICE_COMPRESSOR_TARGET_RATIO": "2"}) == 2
    assert "SLUICE_COMPRESSOR_TARGET_RATIO" in capsys.readouterr().err

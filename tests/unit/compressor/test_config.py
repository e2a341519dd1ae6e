"""Settings parse SLUICE_COMPRESSOR_* and fail with the variable's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.compressor.config import Settings
from services.compressor.server import main
from shared.embedding.onnx import default_model_dir
from shared.pricing import DEFAULT_CATALOGUE
from shared.settings import SettingsError


def test_defaults() -> None:
    assert Settings.from_env({}) == Settings(
        listen="127.0.0.1:50053",
        min_tokens=1500,
        target_ratio=0.5,
        embed_threads=1,
        embed_cache_size=10_000,
        embed_backend="onnx",
        model_dir=default_model_dir({}),
        catalogue_file=DEFAULT_CATALOGUE,
        dispatcher_addr="",
        summary_model="Qwen/Qwen3-8B",
        extractive_nano_usd_per_token=0.5,
        keep_last_turns=4,
        log_level="INFO",
        metrics_listen="127.0.0.1:0",
    )
    # The quantised export: as many gold answers kept as fp32's, ~63 MB less RSS (config.py).
    assert Settings.from_env({}).embed_variant == "int8"
    assert Settings.from_env({"SLUICE_COMPRESSOR_EMBED_VARIANT": "FP32"}).embed_variant == "fp32"


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
            "SLUICE_COMPRESSOR_EMBED_BACKEND": "TORCH",
            "SLUICE_COMPRESSOR_MODEL_DIR": str(tmp_path / "models"),
            "SLUICE_COMPRESSOR_DISPATCHER_ADDR": "127.0.0.1:7000",
            "SLUICE_COMPRESSOR_SUMMARY_MODEL": "gpt-4o",
            "SLUICE_COMPRESSOR_EXTRACTIVE_NANO_USD_PER_TOKEN": "2",
            "SLUICE_COMPRESSOR_KEEP_LAST_TURNS": "6",
            "SLUICE_LOG_LEVEL": "debug",
        }
    )
    assert settings == Settings(
        "0.0.0.0:6000",
        0,
        1.0,
        2,
        0,
        "torch",
        tmp_path / "models",
        catalogue,
        "127.0.0.1:7000",
        "gpt-4o",
        2.0,
        6,
        "DEBUG",
        "127.0.0.1:0",
    )


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
        ("SLUICE_COMPRESSOR_EMBED_BACKEND", "gpu"),
        ("SLUICE_COMPRESSOR_DISPATCHER_ADDR", "no-port"),
        ("SLUICE_COMPRESSOR_EXTRACTIVE_NANO_USD_PER_TOKEN", "-1"),
        ("SLUICE_COMPRESSOR_KEEP_LAST_TURNS", "-2"),
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

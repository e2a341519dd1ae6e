"""Settings.from_env: defaults, parsing and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cache.config import (
    BANDED_MIN_SIMILARITY,
    DEFAULT_MIN_SIMILARITY,
    Settings,
    StoreSpec,
)
from services.cache.verifiers.learned import DEFAULT_MODEL_PATH
from shared.settings import SettingsError


def test_defaults():
    settings = Settings.from_env({"HOME": "/home/someone"})
    assert settings.listen == "127.0.0.1:50052"
    # The default verifier (banded) reads from its own floor, 0.82; the cross-encoder must agree
    # below 0.90, the floor of every verifier without one of its own.
    assert settings.min_similarity == BANDED_MIN_SIMILARITY == 0.82
    assert DEFAULT_MIN_SIMILARITY == 0.90
    assert settings.ttl_s == 86_400
    assert settings.max_entries == 500_000
    assert settings.max_bytes == 1 << 30
    assert settings.ann_threshold == 20_000
    assert settings.embed_threads == 1
    assert settings.embed_backend == "onnx"
    assert settings.model_dir == Path("/home/someone/.cache/sluice/models")
    assert settings.store == StoreSpec("sqlite", ".sluice/cache/cache.db")
    assert settings.sqlite_sync == "normal"
    assert settings.verify == "banded"
    assert settings.log_level == "INFO"


def test_values_are_parsed():
    settings = Settings.from_env(
        {
            "SLUICE_CACHE_LISTEN": "0.0.0.0:6000",
            "SLUICE_CACHE_MIN_SIMILARITY": "0.8",
            "SLUICE_CACHE_TTL_S": "60",
            "SLUICE_CACHE_MAX_ENTRIES": "5",
            "SLUICE_CACHE_MAX_BYTES": "1000000",
            "SLUICE_CACHE_ANN_THRESHOLD": "1000",
            "SLUICE_CACHE_EMBED_THREADS": "2",
            "SLUICE_CACHE_EMBED_BACKEND": "torch",
            "SLUICE_CACHE_MODEL_DIR": "/models",
            "SLUICE_CACHE_STORE": "redis://cache-redis:6379/2",
            "SLUICE_CACHE_SQLITE_SYNC": "FULL",
            "SLUICE_CACHE_VERIFY": "learned",
            "SLUICE_CACHE_CROSSENC_MODEL": "/models/crossenc.onnx",
            "SLUICE_LOG_LEVEL": "debug",
        }
    )
    assert settings == Settings(
        listen="0.0.0.0:6000",
        min_similarity=0.8,
        ttl_s=60.0,
        max_entries=5,
        max_bytes=1_000_000,
        ann_threshold=1000,
        embed_threads=2,
        embed_backend="torch",
        model_dir=Path("/models"),
        store=StoreSpec("redis", "redis://cache-redis:6379/2"),
        sqlite_sync="full",
        verify="learned",
        verifier_model=DEFAULT_MODEL_PATH,
        crossenc_model=Path("/models/crossenc.onnx"),
        log_level="DEBUG",
        metrics_listen="127.0.0.1:0",
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"SLUICE_CACHE_DATA_DIR": "/var/lib/sluice"},
            StoreSpec("sqlite", "/var/lib/sluice/cache.db"),
        ),
        ({"SLUICE_CACHE_STORE": "sqlite:////data/c.db"}, StoreSpec("sqlite", "/data/c.db")),
        ({"SLUICE_CACHE_STORE": "sqlite:///rel/c.db"}, StoreSpec("sqlite", "rel/c.db")),
        ({"SLUICE_CACHE_STORE": "memory://"}, StoreSpec("memory")),
    ],
)
def test_store_locations(env, expected):
    assert Settings.from_env(env).store == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SLUICE_CACHE_LISTEN", "nowhere"),
        ("SLUICE_CACHE_MIN_SIMILARITY", "abc"),
        ("SLUICE_CACHE_MIN_SIMILARITY", "1.5"),
        ("SLUICE_CACHE_MIN_SIMILARITY", "-0.1"),
        ("SLUICE_CACHE_MIN_SIMILARITY", "nan"),
        ("SLUICE_CACHE_TTL_S", "0"),
        ("SLUICE_CACHE_TTL_S", "inf"),
        ("SLUICE_CACHE_TTL_S", "soon"),
        ("SLUICE_CACHE_MAX_ENTRIES", "0"),
        ("SLUICE_CACHE_MAX_BYTES", "10"),
        ("SLUICE_CACHE_ANN_THRESHOLD", "1"),
        ("SLUICE_CACHE_EMBED_THREADS", "0"),
        ("SLUICE_CACHE_EMBED_BACKEND", "tensorflow"),
        ("SLUICE_CACHE_STORE", "postgres://db/cache"),
        ("SLUICE_CACHE_STORE", "sqlite:///"),
        ("SLUICE_CACHE_STORE", "redis://"),
        ("SLUICE_CACHE_SQLITE_SYNC", "off"),
        ("SLUICE_LOG_LEVEL", "chatty"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})

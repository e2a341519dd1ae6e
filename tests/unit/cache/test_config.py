"""Settings.from_env: defaults, parsing and errors that name the variable."""

from __future__ import annotations

import pytest

from services.cache.config import DEFAULT_MIN_SIMILARITY, Settings
from shared.settings import SettingsError


def test_defaults():
    settings = Settings.from_env({})
    assert settings.listen == "127.0.0.1:50052"
    assert settings.min_similarity == DEFAULT_MIN_SIMILARITY == 0.90
    assert settings.ttl_s == 86_400
    assert settings.max_entries == 10_000
    assert settings.embed_threads == 1
    assert settings.log_level == "INFO"


def test_values_are_parsed():
    settings = Settings.from_env(
        {
            "SLUICE_CACHE_LISTEN": "0.0.0.0:6000",
            "SLUICE_CACHE_MIN_SIMILARITY": "0.8",
            "SLUICE_CACHE_TTL_S": "60",
            "SLUICE_CACHE_MAX_ENTRIES": "5",
            "SLUICE_CACHE_EMBED_THREADS": "2",
            "SLUICE_LOG_LEVEL": "debug",
        }
    )
    assert settings == Settings(
        listen="0.0.0.0:6000",
        min_similarity=0.8,
        ttl_s=60.0,
        max_entries=5,
        embed_threads=2,
        log_level="DEBUG",
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SLUICE_CACHE_LISTEN", "nowhere"),
        ("SLUICE_CACHE_MIN_SIMILARITY", "abc"),
        ("SLUICE_CACHE_MIN_SIMILARITY", "1.5"),
        ("SLUICE_CACHE_MIN_SIMILARITY", "-0.1"),
        ("SLUICE_CACHE_MIN_SIMILARITY", "nan"),
        ("SLUICE_CACHE_TTL_S", "0"),
        ("SLUICE_CACHE_TTL_S", "soon"),
        ("SLUICE_CACHE_MAX_ENTRIES", "0"),
        ("SLUICE_CACHE_EMBED_THREADS", "0"),
        ("SLUICE_LOG_LEVEL", "chatty"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})

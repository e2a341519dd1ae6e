"""Router settings: the ledger URL is checked at start, naming the variable."""

from __future__ import annotations

import pytest

from services.router.config import Settings
from shared.settings import SettingsError


def test_ledger_defaults_to_memory_and_accepts_redis() -> None:
    assert Settings.from_env({}).ledger_url == "memory://"
    url = "redis://10.0.0.7:6379/2"
    assert Settings.from_env({"SLUICE_ROUTER_LEDGER": url}).ledger_url == url


@pytest.mark.parametrize("value", ["sqlite:///x.db", "redis://", "memory"])
def test_bad_ledger_url_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match=r"SLUICE_ROUTER_LEDGER=.* must be memory:// or redis"):
        Settings.from_env({"SLUICE_ROUTER_LEDGER": value})

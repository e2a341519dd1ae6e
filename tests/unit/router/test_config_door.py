"""The front doors' limits come from SLUICE_ROUTER_HTTP_* / _GRPC_* and are checked at start."""

from __future__ import annotations

import pytest

from services.router.config import Settings
from services.router.http_limits import DoorLimits
from shared.settings import SettingsError


def test_limits_default_and_read_from_env() -> None:
    assert Settings.from_env({}).door == DoorLimits()
    settings = Settings.from_env(
        {
            "SLUICE_ROUTER_HTTP_MAX_BODY_BYTES": "4096",
            "SLUICE_ROUTER_HTTP_MAX_HEADER_BYTES": "2048",
            "SLUICE_ROUTER_HTTP_HEADER_TIMEOUT_S": "1.5",
            "SLUICE_ROUTER_HTTP_BODY_TIMEOUT_S": "3",
            "SLUICE_ROUTER_HTTP_KEEP_ALIVE_S": "2",
            "SLUICE_ROUTER_HTTP_MAX_CONNECTIONS": "10",
            "SLUICE_ROUTER_GRPC_MAX_MESSAGE_BYTES": "65536",
        }
    )
    assert settings.door == DoorLimits(4096, 2048, 1.5, 3.0, 2, 10)
    assert settings.grpc_max_message_bytes == 65536


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SLUICE_ROUTER_HTTP_MAX_BODY_BYTES", "12"),
        ("SLUICE_ROUTER_HTTP_HEADER_TIMEOUT_S", "soon"),
        ("SLUICE_ROUTER_GRPC_MAX_MESSAGE_BYTES", "-1"),
    ],
)
def test_bad_limits_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})

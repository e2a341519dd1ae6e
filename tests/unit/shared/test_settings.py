"""Settings readers fail with the variable's name."""

import pytest

from shared.settings import SettingsError, env_address, env_bool, env_float, env_int


def test_defaults_apply_when_unset_or_blank() -> None:
    assert env_int({"X": "  "}, "X", 7) == 7
    assert env_float({}, "X", 0.5) == 0.5
    assert env_bool({}, "X", True) is True


def test_values_parse() -> None:
    assert env_int({"X": "12"}, "X", 0, minimum=1) == 12
    assert env_float({"X": "0.25"}, "X", 0, minimum=0, maximum=1) == 0.25
    assert env_bool({"X": "off"}, "X", True) is False
    assert env_address({"X": "127.0.0.1:0"}, "X", "") == "127.0.0.1:0"


@pytest.mark.parametrize(
    ("reader", "value"),
    [
        (lambda env: env_int(env, "SLUICE_X", 1), "ten"),
        (lambda env: env_int(env, "SLUICE_X", 1, minimum=1), "0"),
        (lambda env: env_float(env, "SLUICE_X", 1.0, maximum=1.0), "1.5"),
        (lambda env: env_bool(env, "SLUICE_X", True), "maybe"),
        (lambda env: env_address(env, "SLUICE_X", "a:1"), "localhost"),
        (lambda env: env_address(env, "SLUICE_X", "a:1"), "host:99999"),
    ],
)
def test_bad_values_name_the_variable(reader, value: str) -> None:
    with pytest.raises(SettingsError, match="SLUICE_X"):
        reader({"SLUICE_X": value})

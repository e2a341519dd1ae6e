"""Settings from the environment and scenario YAML validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from services.simulator.app import load_simulation
from services.simulator.config import Settings
from services.simulator.scenario import (
    DEFAULT_SCENARIO,
    ScenarioError,
    load_scenario,
    parse_scenario,
)
from shared.settings import SettingsError
from tests.unit.simulator.helpers import CHEAP, DEFAULT_MODELS, FIXTURES


def test_defaults():
    settings = Settings.from_env({})
    assert settings.listen == "127.0.0.1:8700"
    assert (settings.host, settings.port) == ("127.0.0.1", 8700)
    assert settings.scenario_file == DEFAULT_SCENARIO
    assert settings.replay_dir is None
    assert settings.latency_scale is None  # the scenario's own latency_scale applies
    assert settings.seed == 0


def test_environment_overrides(tmp_path):
    settings = Settings.from_env(
        {
            "SLUICE_SIMULATOR_LISTEN": "0.0.0.0:0",
            "SLUICE_SIMULATOR_CONFIG": str(DEFAULT_SCENARIO),
            "SLUICE_SIMULATOR_REPLAY_DIR": str(FIXTURES),
            "SLUICE_SIMULATOR_LATENCY_SCALE": "0",
            "SLUICE_SIMULATOR_SEED": "42",
        }
    )
    assert settings.port == 0
    assert settings.replay_dir == FIXTURES
    assert settings.latency_scale == 0.0
    assert settings.seed == 42
    from_argument = Settings.from_env(
        {"SLUICE_SIMULATOR_REPLAY_DIR": str(tmp_path)}, argv=[str(FIXTURES)]
    )
    assert from_argument.replay_dir == FIXTURES


@pytest.mark.parametrize(
    ("env", "argv", "named"),
    [
        ({"SLUICE_SIMULATOR_LISTEN": "nowhere"}, [], "SLUICE_SIMULATOR_LISTEN"),
        ({"SLUICE_SIMULATOR_LATENCY_SCALE": "-1"}, [], "SLUICE_SIMULATOR_LATENCY_SCALE"),
        ({"SLUICE_SIMULATOR_LATENCY_SCALE": "fast"}, [], "SLUICE_SIMULATOR_LATENCY_SCALE"),
        ({"SLUICE_SIMULATOR_SEED": "x"}, [], "SLUICE_SIMULATOR_SEED"),
        ({"SLUICE_SIMULATOR_CONFIG": "/no/such.yaml"}, [], "SLUICE_SIMULATOR_CONFIG"),
        ({"SLUICE_SIMULATOR_REPLAY_DIR": "/no/such/dir"}, [], "SLUICE_SIMULATOR_REPLAY_DIR"),
        ({}, ["/no/such/dir"], "replay directory argument"),
        ({}, ["a", "b"], "usage"),
    ],
)
def test_bad_settings_name_the_variable(env, argv, named):
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env, argv=argv)


def test_default_scenario_serves_the_seed_models_and_regions_fast_and_fault_free():
    scenario = load_scenario()
    assert set(DEFAULT_MODELS) <= set(scenario.models)
    assert {"us-east", "eu-west", "ap-south"} <= set(scenario.regions)
    for region in scenario.regions.values():
        assert region.latency.ttft_p99_ms < 100
        faults = region.faults
        assert faults.error_rate == faults.rate_limit_rate == faults.timeout_rate == 0
        assert not faults.outage
    assert scenario.models[CHEAP].max_output_tokens is not None


def test_default_scenario_models_are_all_priced_in_the_catalogue():
    simulation = load_simulation(Settings())
    assert simulation.replay is None
    assert list(simulation.scenario.models) == list(DEFAULT_MODELS)


def test_unpriced_models_are_refused(tmp_path):
    document = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    document["models"]["mystery-model"] = {"mean_output_tokens": 10}
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ScenarioError, match=r"without a price .*mystery-model"):
        load_simulation(Settings(scenario_file=path))


def _document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    return document


def _set(document: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    *parents, leaf = path.split("/")
    node: Any = document
    for key in parents:
        node = node[key] if not key.isdigit() else node[int(key)]
    node[int(leaf) if leaf.isdigit() else leaf] = value
    return document


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        ("models/gpt-4o/mean_output_tokens", 0, "models.gpt-4o.mean_output_tokens=0"),
        ("models/gpt-4o/max_output_tokens", "lots", "models.gpt-4o.max_output_tokens='lots'"),
        ("models/gpt-4o/temperature", 1, "models.gpt-4o has unknown field(s): temperature"),
        ("regions/eu-west/latency/ttft_median_ms", -5, "regions.eu-west.latency.ttft_median_ms"),
        ("regions/eu-west/latency/ttft_p99_ms", 1, "ttft_p99_ms must be at least"),
        ("regions/eu-west/faults/error_rate", 2, "regions.eu-west.faults.error_rate=2"),
        ("regions/eu-west/faults/outage", "no", "regions.eu-west.faults.outage='no'"),
        ("regions/eu-west/faults/retry_after_s", 1.5, "retry_after_s=1.5 is not an integer"),
        ("regions/admin", {"latency": {}}, "regions.admin: a region name must match"),
        ("rules/0/match", "([", "rules[0].match is not a valid regex"),
        ("rules/0/models", ["gpt-9"], "rules[0].models names unknown model(s): gpt-9"),
        ("rules/1/finish_reason", "done", "rules[1].finish_reason='done' is not one of"),
        ("rules/2/repeat", 0, "rules[2].repeat=0 must be at least 1"),
        ("rules/2/answer", "", "rules[2].answer must be a non-empty string"),
        ("latency_scale", -1, "latency_scale=-1 must be within"),
        ("models", {}, "models must name at least one model"),
        ("colour", "blue", "scenario has unknown field(s): colour"),
    ],
)
def test_bad_scenarios_name_the_field(path, value, problem):
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(_set(_document(), path, value))
    assert problem in str(caught.value)


def test_missing_latency_is_named():
    document = _document()
    del document["regions"]["us-east"]["latency"]["per_token_ms"]
    with pytest.raises(ScenarioError, match=r"regions\.us-east\.latency is missing per_token_ms"):
        parse_scenario(document)


def test_load_names_the_file(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("models: [unclosed")
    with pytest.raises(ScenarioError, match=r"broken\.yaml"):
        load_scenario(path)

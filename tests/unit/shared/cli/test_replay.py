"""`sluice up --replay` wires the dispatcher and router to the replayed models by itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.dispatcher.endpoints import load_endpoints
from shared.cli.replay import REPLAY_POLICY, ReplaySetupError, read_replay, replay_env

HEADER = "sample_id,prompt,eval_name,m-one|model_response,m-one|total_cost,m-two|model_response\n"


def replay_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "a.csv").write_text(
        HEADER
        + "1,\"['A long question about many things?']\",x,\"['yes']\",0.1,\"['no']\"\n"
        + "2,\"['Short one?']\",x,\"['yes']\",0.1,\"['no']\"\n"
    )
    return folder


def test_replay_env_writes_endpoints_serving_the_replayed_models_and_picks_their_policy(
    tmp_path: Path,
) -> None:
    folder = replay_folder(tmp_path)

    env, data = replay_env(folder, tmp_path, {})

    assert data.models == ("m-one", "m-two")
    assert data.shortest_prompt == "Short one?"
    assert env["SLUICE_SIMULATOR_REPLAY_DIR"] == str(folder.resolve())
    assert env["SLUICE_ROUTER_POLICY"] == str(REPLAY_POLICY)
    # The dispatcher's own loader accepts the file, and every region serves both the
    # simulator's scenario models and the replayed ones.
    endpoints = load_endpoints(
        Path(env["SLUICE_DISPATCHER_ENDPOINTS"]), {"SLUICE_SIMULATOR_URL": "http://127.0.0.1:9"}
    )
    assert {e.region for e in endpoints} == {"us-east", "eu-west", "ap-south"}
    for endpoint in endpoints:
        assert endpoint.base_url.startswith("http://127.0.0.1:9/")
        if endpoint.provider == "anthropic":
            assert not {"m-one", "m-two"} & set(endpoint.models)
        else:
            assert {"m-one", "m-two", "Qwen/Qwen3-8B"} <= set(endpoint.models)


def test_the_routerbench_policy_names_only_models_the_subset_records() -> None:
    data = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "routerbench-subset"
    if not data.is_dir():
        pytest.skip("the RouterBench subset is not beside the repository")
    recorded = set(read_replay(data).models)
    policy = yaml.safe_load(REPLAY_POLICY.read_text())
    tiers = {
        tier["model"]
        for tenant in policy["tenants"].values()
        for model_class in tenant["model_classes"].values()
        for tier in model_class["tiers"]
    }
    assert tiers <= recorded


def test_user_endpoints_and_policy_are_left_alone(tmp_path: Path) -> None:
    env, _ = replay_env(
        replay_folder(tmp_path),
        tmp_path,
        {"SLUICE_DISPATCHER_ENDPOINTS": "/mine.yaml", "SLUICE_ROUTER_POLICY": "/mine-policy.yaml"},
    )
    assert "SLUICE_DISPATCHER_ENDPOINTS" not in env and "SLUICE_ROUTER_POLICY" not in env


def test_a_folder_without_csv_files_is_named(tmp_path: Path) -> None:
    with pytest.raises(ReplaySetupError, match=r"--replay .*empty: no RouterBench \*\.csv"):
        read_replay(tmp_path / "empty")

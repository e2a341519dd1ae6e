"""`sluice up --replay` wires the dispatcher and router to the replayed models by itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from services.dispatcher.endpoints import load_endpoints
from shared.cli.keys import key_hint
from shared.cli.replay import (
    REPLAY_POLICY,
    ROUTELLM_MODELS,
    ROUTELLM_POLICY,
    ReplaySetupError,
    read_replay,
    replay_env,
)

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
    with pytest.raises(
        ReplaySetupError, match=r"--replay .*empty: neither RouterBench \*\.csv files nor RouteLLM"
    ):
        read_replay(tmp_path / "empty")


def routellm_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "routellm-evals"
    (folder / "gsm8k").mkdir(parents=True)
    (folder / "mt_bench").mkdir()
    (folder / "gsm8k" / "gsm8k_responses.csv").write_text(
        "prompt,m,g,m_response,g_response\n"
        '"Tom has  3 apples.\nHow many?",True,True,"3","3"\n'
        '"Ann has 12 pears and eats 5 of them. How many are left?",True,True,"7","7"\n'
    )
    contaminated = {"train_prompt": "x", "eval_prompt": "Tom has 3 apples. How many?"}
    (folder / "gsm8k" / "contaminated_prompts.jsonl").write_text(json.dumps(contaminated) + "\n")
    (folder / "mt_bench" / "question.jsonl").write_text(
        json.dumps({"question_id": 81, "turns": ["Write a poem.", "Shorter."]}) + "\n"
    )
    return folder


def test_routellm_folder_is_wired_to_its_models_and_policy(tmp_path: Path) -> None:
    env, data = replay_env(routellm_folder(tmp_path), tmp_path, {})

    assert data.models == ROUTELLM_MODELS
    assert env["SLUICE_ROUTER_POLICY"] == str(ROUTELLM_POLICY)
    # The contaminated prompt is never suggested: the simulator leaves it out.
    assert data.shortest_prompt == "Ann has 12 pears and eats 5 of them. How many are left?"
    endpoints = load_endpoints(
        Path(env["SLUICE_DISPATCHER_ENDPOINTS"]), {"SLUICE_SIMULATOR_URL": "http://127.0.0.1:9"}
    )
    assert any(set(ROUTELLM_MODELS) <= set(e.models) for e in endpoints)
    # The hint names the policy's own key, which the router accepts.
    hint = key_hint(env, data.shortest_prompt)
    assert (hint.tenant, hint.key) == ("routellm", "routellm")


def test_the_routellm_policy_tiers_are_the_models_the_simulator_serves() -> None:
    policy = yaml.safe_load(ROUTELLM_POLICY.read_text())
    tiers = {
        tier["model"]
        for spec in policy["tenants"].values()
        for model_class in spec["model_classes"].values()
        for tier in model_class["tiers"]
    }
    assert tiers == set(ROUTELLM_MODELS)


def test_routellm_mt_bench_only_folder_suggests_a_first_turn(tmp_path: Path) -> None:
    folder = routellm_folder(tmp_path)
    (folder / "gsm8k" / "gsm8k_responses.csv").unlink()

    assert read_replay(folder).shortest_prompt == "Write a poem."


def test_a_broken_routellm_file_is_named(tmp_path: Path) -> None:
    folder = routellm_folder(tmp_path)
    (folder / "mt_bench" / "question.jsonl").write_text("{not json\n")
    (folder / "gsm8k" / "gsm8k_responses.csv").unlink()

    with pytest.raises(ReplaySetupError, match="cannot read RouteLLM"):
        read_replay(folder)

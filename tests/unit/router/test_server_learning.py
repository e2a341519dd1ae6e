"""Start-up of the learned parts: loaded only when a policy needs them, fatal when broken."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from services.router.config import Settings
from services.router.learned import ScorerUnavailable
from services.router.learning.scorer import MODELS_DIR
from services.router.rollout import PolicySelector
from services.router.server import build_selector, load_learning
from shared.pricing import DEFAULT_CATALOGUE, load_catalogue
from tests.unit.router.fixtures import policy_doc


def settings(tmp_path: Path, scored: bool) -> Settings:
    doc = policy_doc()
    if scored:
        tier = doc["tenants"]["acme"]["model_classes"]["chat"]["tiers"][0]
        tier.update({"gates": ["scorer"], "min_score": 0.5})
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(doc))
    (tmp_path / "models").mkdir(exist_ok=True)
    catalogue = tmp_path / "prices.yaml"
    prices = yaml.safe_load(DEFAULT_CATALOGUE.read_text())
    prices["models"].update({m: {"input": 1.0, "output": 1.0} for m in ("cheap", "mid", "top")})
    catalogue.write_text(yaml.safe_dump(prices))
    return Settings.from_env(
        {
            "SLUICE_ROUTER_POLICY": str(policy),
            "SLUICE_ROUTER_CATALOGUE": str(catalogue),
            "SLUICE_ROUTER_LEARNING_DIR": str(tmp_path / "models"),
        }
    )


def selector(config: Settings) -> PolicySelector:
    return build_selector(config, load_catalogue(config.catalogue_file))


def test_a_policy_without_learned_gates_loads_nothing(tmp_path: Path) -> None:
    config = settings(tmp_path, scored=False)
    assert load_learning(config, selector(config)) is None


def test_a_missing_scorer_file_stops_the_start_naming_the_file(tmp_path: Path) -> None:
    config = settings(tmp_path, scored=True)
    with pytest.raises(ScorerUnavailable, match=r"models/answer_scorer.json cannot be loaded"):
        load_learning(config, selector(config))


def test_a_scorer_trained_on_other_features_is_refused(tmp_path: Path) -> None:
    config = settings(tmp_path, scored=True)
    raw = json.loads((MODELS_DIR / "answer_scorer.json").read_text())
    raw["feature_names"] = raw["feature_names"][:-1]
    (tmp_path / "models" / "answer_scorer.json").write_text(json.dumps(raw))
    with pytest.raises(ScorerUnavailable, match="trained on different features; retrain it"):
        load_learning(config, selector(config))


def test_the_shipped_scorer_loads_for_a_policy_that_uses_it(tmp_path: Path) -> None:
    config = settings(tmp_path, scored=True)
    shutil.copy(MODELS_DIR / "answer_scorer.json", tmp_path / "models" / "answer_scorer.json")
    assert load_learning(config, selector(config)) is not None

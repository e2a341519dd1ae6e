from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from services.router.learning.cascade_design import CascadeDesign
from services.router.learning.scorer import MODELS_DIR
from services.router.learning.start_tier import StartTierPredictor, StartTierSettings, TierPrior

COSTS = [1.0, 2.0, 20.0]


def unit(index: int, dim: int = 8) -> np.ndarray:
    vector = np.zeros(dim, dtype=np.float32)
    vector[index] = 1.0
    return vector


def constant_prior(probabilities: list[float], dim: int = 8) -> TierPrior:
    logits = [math.log(p / (1 - p)) for p in probabilities]
    return TierPrior(
        np.zeros(dim), np.eye(dim)[:, :2], np.zeros((len(logits), 2)), np.asarray(logits)
    )


def test_with_no_history_the_cheapest_tier_starts() -> None:
    predictor = StartTierPredictor(3, StartTierSettings(exploration=0.0))
    assert predictor.choose(unit(0), COSTS) == 0
    assert predictor.acceptance(unit(0))[-1] == 1.0


def test_a_tier_rejected_for_similar_prompts_is_skipped_only_for_them() -> None:
    predictor = StartTierPredictor(
        3, StartTierSettings(exploration=0.0), prior=constant_prior([0.9, 0.9, 0.99])
    )
    for _ in range(30):
        predictor.observe(unit(0), [(0, False), (1, True)])
    assert predictor.acceptance(unit(0))[0] < 0.2
    assert predictor.choose(unit(0), COSTS) == 1
    # An unrelated prompt has no similar history: the prior (0.9) still says start cheap.
    assert predictor.acceptance(unit(3))[0] == pytest.approx(0.9)
    assert predictor.choose(unit(3), COSTS) == 0


def test_old_observations_decay_so_the_estimate_follows_recent_traffic() -> None:
    settings = StartTierSettings(exploration=0.0, half_life=5.0, neighbours=8)
    predictor = StartTierPredictor(3, settings)
    for _ in range(20):
        predictor.observe(unit(0), [(0, False), (1, True)])
    assert predictor.choose(unit(0), COSTS) == 1
    for _ in range(20):
        predictor.observe(unit(0), [(0, True)])
    assert predictor.acceptance(unit(0))[0] > 0.9
    assert predictor.choose(unit(0), COSTS) == 0


def test_without_decay_the_same_history_would_stay_split() -> None:
    settings = StartTierSettings(exploration=0.0, half_life=1e9, neighbours=40)
    predictor = StartTierPredictor(3, settings)
    for accepted in [False] * 20 + [True] * 20:
        predictor.observe(unit(0), [(0, accepted)])
    assert predictor.acceptance(unit(0))[0] == pytest.approx(0.5, abs=0.05)


def test_the_exploration_floor_keeps_trying_cheaper_tiers() -> None:
    settings = StartTierSettings(exploration=0.25)
    predictor = StartTierPredictor(3, settings, rng=random.Random(7))
    for _ in range(30):
        predictor.observe(unit(0), [(0, False), (1, False), (2, True)])
    choices = [predictor.choose(unit(0), COSTS) for _ in range(2000)]
    explored = sum(c < 2 for c in choices) / len(choices)
    assert choices.count(2) > 0
    assert explored == pytest.approx(0.25, abs=0.04)


def test_no_exploration_means_the_expected_cost_choice_always() -> None:
    predictor = StartTierPredictor(3, StartTierSettings(exploration=0.0))
    for _ in range(30):
        predictor.observe(unit(0), [(0, False), (1, False), (2, True)])
    assert {predictor.choose(unit(0), COSTS) for _ in range(200)} == {2}


def test_bad_input_is_refused() -> None:
    predictor = StartTierPredictor(2)
    with pytest.raises(ValueError, match="tier 5"):
        predictor.observe(unit(0), [(5, True)])
    with pytest.raises(ValueError, match="2 tier costs"):
        predictor.choose(unit(0), [1.0])
    with pytest.raises(ValueError, match="exploration"):
        StartTierSettings(exploration=1.5)
    with pytest.raises(ValueError, match="covers 3 tiers"):
        StartTierPredictor(2, prior=constant_prior([0.5, 0.5, 0.5]))


def test_a_prior_survives_a_round_trip(tmp_path: Path) -> None:
    prior = constant_prior([0.2, 0.7, 0.99])
    prior.save(tmp_path / "prior.json")
    loaded = TierPrior.load(tmp_path / "prior.json")
    assert np.allclose(loaded.probabilities(unit(1)), [0.2, 0.7, 0.99], atol=1e-4)
    raw = json.loads((tmp_path / "prior.json").read_text())
    raw["bias"] = raw["bias"][:2]
    with pytest.raises(ValueError, match="one bias per tier"):
        TierPrior.from_json(raw)


def test_the_shipped_prior_matches_the_shipped_cascade() -> None:
    design = CascadeDesign.load(MODELS_DIR / "cascade.json")
    prior = TierPrior.load(MODELS_DIR / "start_tier.json")
    predictor = StartTierPredictor(len(design.tiers), prior=prior)
    vector = np.full(384, 1 / math.sqrt(384), dtype=np.float32)
    estimate = predictor.acceptance(vector)
    assert estimate.shape == (len(design.tiers),)
    assert np.all((estimate > 0) & (estimate <= 1))


def test_a_decision_says_why_and_whether_it_explored() -> None:
    predictor = StartTierPredictor(3, StartTierSettings(exploration=1.0), rng=random.Random(3))
    for _ in range(30):
        predictor.observe(unit(0), [(0, False), (1, False), (2, True)])
    decided = predictor.decide(unit(0), COSTS)
    # With exploration certain, a tier below the cheapest expected start (tier 3) is taken.
    assert decided.explored and decided.tier < 2
    assert decided.reason.startswith("exploring below the cheapest expected start (tier 3)")
    assert "tier 1 P(accept)=" in decided.reason and "E[cost]=" in decided.reason
    calm = StartTierPredictor(3, StartTierSettings(exploration=0.0))
    chosen = calm.decide(unit(0), COSTS)
    assert (chosen.tier, chosen.explored) == (0, False)
    assert chosen.reason.startswith("lowest expected cost; tier 1 P(accept)=0.50")

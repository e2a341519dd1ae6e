"""Policy fields of the learned gates: scorer min_score, logprob floors, judge, start, packing."""

import copy

import pytest

from services.router.policy import PolicyError, load_policy, parse_policy
from shared.pricing import load_catalogue
from tests.unit.router.fixtures import catalogue, policy_doc

CHAT = ["tenants", "acme", "model_classes", "chat"]


def with_changes(changes: dict[tuple, object]) -> dict:
    doc = copy.deepcopy(policy_doc())
    for path, value in changes.items():
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return doc


def tier0(key: str) -> tuple:
    return (*CHAT, "tiers", 0, key)


def test_learned_fields_are_parsed() -> None:
    doc = with_changes(
        {
            tier0("gates"): ["finish_reason", "logprob", "scorer", "judge"],
            tier0("min_score"): 0.65,
            tier0("min_mean_logprob"): -0.5,
            (*CHAT, "learned_start"): True,
            (*CHAT, "packable"): True,
            (*CHAT, "judge_model"): "cheap",
        }
    )
    spec = parse_policy(doc, catalogue()).tenants["acme"].model_class("chat")
    first = spec.tiers[0]
    assert (first.min_score, first.min_mean_logprob, first.min_token_logprob) == (0.65, -0.5, None)
    assert first.wants_logprobs and not spec.tiers[1].wants_logprobs
    assert spec.learned_start and spec.packable and spec.judge_model == "cheap"
    assert spec.uses_learning
    assert parse_policy(doc, catalogue()).uses_learning


def test_a_policy_without_learned_gates_does_not_load_the_scorer() -> None:
    parsed = parse_policy(policy_doc(), catalogue())
    assert not parsed.uses_learning
    spec = parsed.tenants["acme"].model_class("chat")
    assert not (spec.learned_start or spec.packable) and spec.judge_model == ""


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({tier0("gates"): ["scorer"]}, r"tiers\[0\].min_score: the 'scorer' gate and min_score"),
        ({tier0("min_score"): 0.5}, r"tiers\[0\].min_score: the 'scorer' gate and min_score"),
        (
            {tier0("gates"): ["scorer"], tier0("min_score"): 1.5},
            r"tiers\[0\].min_score must be within \[0, 1\]",
        ),
        (
            {tier0("gates"): ["scorer"], tier0("min_score"): "high"},
            r"tiers\[0\].min_score must be a number",
        ),
        ({tier0("gates"): ["logprob"]}, r"tiers\[0\]: the 'logprob' gate needs min_mean_logprob"),
        ({tier0("min_token_logprob"): -2}, r"tiers\[0\]: the 'logprob' gate needs"),
        (
            {tier0("gates"): ["logprob"], tier0("min_mean_logprob"): 0.3},
            r"tiers\[0\].min_mean_logprob must be <= 0",
        ),
        ({tier0("gates"): ["judge"]}, r"chat.judge_model is required when a tier has"),
        (
            {tier0("gates"): ["judge"], (*CHAT, "judge_model"): "ghost"},
            r"chat.judge_model: model 'ghost' is not in the price catalogue",
        ),
        ({(*CHAT, "learned_start"): "yes"}, r"chat.learned_start must be true or false"),
        ({(*CHAT, "packable"): 1}, r"chat.packable must be true or false"),
    ],
)
def test_bad_learned_fields_name_the_field(changes: dict, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(with_changes(changes), catalogue())


def test_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text(
        "version: v\ntenants:\n  acme:\n    api_key_sha256: [" + "a" * 64 + "]\n"
        "    baseline_model: top\n    model_classes:\n      chat:\n        tiers:\n"
        "          - model: cheap\n            gates: [scorer]\n"
    )
    with pytest.raises(PolicyError, match=rf"{bad}: tenants.acme.model_classes.chat.tiers\[0\]"):
        load_policy(bad, catalogue())


def test_the_shipped_routerbench_policy_uses_the_scorer() -> None:
    from services.router.config import DEFAULT_POLICY

    shipped = load_policy(DEFAULT_POLICY.with_name("routerbench.yaml"), load_catalogue())
    assert shipped.uses_learning
    for spec in shipped.tenants["routerbench"].model_classes.values():
        scored = [t for t in spec.tiers if "scorer" in t.gates]
        assert scored and all(t.min_score is not None for t in scored)


def test_the_shipped_routerbench_policy_matches_the_trained_cascade() -> None:
    from services.router.config import DEFAULT_POLICY
    from services.router.learning.cascade_design import CascadeDesign
    from services.router.learning.scorer import MODELS_DIR

    design = CascadeDesign.load(MODELS_DIR / "cascade.json")
    shipped = load_policy(DEFAULT_POLICY.with_name("routerbench.yaml"), load_catalogue())
    spec = shipped.tenants["routerbench"].model_class("learned")
    assert tuple(t.model for t in spec.tiers) == design.tiers
    assert tuple(t.min_score for t in spec.tiers[:-1]) == design.thresholds()
    assert shipped.tenants["routerbench"].model_class("learned-start").learned_start

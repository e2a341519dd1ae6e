"""Policy parsing, validation and API-key authentication."""

import copy

import pytest

from services.router.policy import PolicyError, load_policy, parse_policy
from shared.errors import InvalidRequest, Unauthenticated
from shared.pricing import load_catalogue
from tests.unit.router.fixtures import catalogue, policy, policy_doc


def test_authenticates_by_key_digest() -> None:
    assert policy().authenticate("acme-key").tenant_id == "acme"
    assert policy().authenticate("other-key").tenant_id == "other"


@pytest.mark.parametrize(("key", "message"), [("", "missing API key"), ("nope", "unknown API key")])
def test_bad_keys_are_unauthenticated(key: str, message: str) -> None:
    with pytest.raises(Unauthenticated, match=message):
        policy().authenticate(key)


def test_model_class_default_and_unknown() -> None:
    tenant = policy().tenants["acme"]
    assert [t.model for t in tenant.model_class("").tiers] == ["cheap", "mid", "top"]
    assert [t.index for t in tenant.model_class("chat").tiers] == [1, 2, 3]
    with pytest.raises(InvalidRequest, match=r"unknown model_class 'vision'.*known: chat"):
        tenant.model_class("vision")


def mutated(path: list, value) -> dict:
    doc = copy.deepcopy(policy_doc())
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["version"], "", "'version' is required"),
        (["tenants", "acme", "baseline_model"], "nope", "baseline_model 'nope' is not in"),
        (["tenants", "acme", "api_key_sha256"], ["short"], "64 hex"),
        (
            ["tenants", "acme", "model_classes", "chat", "tiers", 0, "model"],
            "ghost",
            r"tiers\[0\]: model 'ghost'",
        ),
        (
            ["tenants", "acme", "model_classes", "chat", "tiers", 0, "gates"],
            ["vibes"],
            "unknown gates",
        ),
        (["tenants", "acme", "model_classes", "chat", "max_tokens"], 0, "max_tokens"),
        (["tenants", "acme", "default_model_class"], "nope", "default_model_class"),
        (["tenants", "acme", "cache"], {"bogus": True}, "cache accepts only"),
        (["tenants", "acme", "model_classes", "chat", "temperature"], 3, "temperature must be"),
    ],
)
def test_invalid_policies_name_the_field(path: list, value, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(mutated(path, value), catalogue())


def test_shipped_default_policy_is_valid_and_accepts_the_dev_key() -> None:
    from services.router.config import DEFAULT_POLICY

    shipped = load_policy(DEFAULT_POLICY, load_catalogue())
    assert shipped.authenticate("dev").tenant_id == "dev"
    assert shipped.tenants["dev"].baseline_model == "gpt-4o"


def test_sampled_caching_is_opt_in() -> None:
    assert policy().tenants["acme"].cache_sampled is False
    assert (
        parse_policy(mutated(["tenants", "acme", "cache"], {"sampled": True}), catalogue())
        .tenants["acme"]
        .cache_sampled
    )


def test_latency_budget_and_file_named_errors(tmp_path) -> None:
    doc = mutated(["tenants", "acme", "model_classes", "chat", "tiers", 1, "latency_budget_s"], 2.5)
    assert (
        parse_policy(doc, catalogue()).tenants["acme"].model_class("chat").tiers[1].latency_budget_s
        == 2.5
    )
    bad = tmp_path / "policy.yaml"
    bad.write_text(
        "version: v\ntenants:\n  acme:\n    api_key_sha256: [" + "a" * 64 + "]\n"
        "    baseline_model: top\n    model_classes:\n      chat:\n        tiers:\n"
        "          - model: cheap\n            latency_budget_s: -1\n"
    )
    with pytest.raises(
        PolicyError,
        match=rf"{bad}: tenants.acme.model_classes.chat.tiers\[0\]"
        r".latency_budget_s must be positive",
    ):
        load_policy(bad, catalogue())


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"daily_usd": "lots"}, "daily_usd='lots' is not a USD amount"),
        ({"monthly_usd": -1}, "monthly_usd must be a non-negative"),
        ({"on_exhausted": "panic"}, "on_exhausted must be"),
        ({"weekly_usd": 1}, "accepts daily_usd"),
    ],
)
def test_bad_budgets_name_the_field(budget, message) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(mutated(["tenants", "acme", "budget"], budget), catalogue())

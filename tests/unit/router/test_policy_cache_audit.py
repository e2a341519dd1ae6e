"""The tenant's cache audit rate (off by default, a share in [0, 1]) and shadow checks (on by
default, a boolean), validated at start-up."""

import pytest

from services.router.policy import PolicyError, parse_policy
from tests.unit.router.fixtures import catalogue, policy_doc


def with_cache(cache: object) -> dict:
    doc = policy_doc()
    doc["tenants"]["acme"]["cache"] = cache
    return doc


def test_audits_are_off_unless_the_tenant_sets_a_rate() -> None:
    assert parse_policy(policy_doc(), catalogue()).tenants["acme"].cache_audit_rate == 0.0
    policy = parse_policy(with_cache({"audit_rate": 0.02, "sampled": True}), catalogue())
    tenant = policy.tenants["acme"]
    assert (tenant.cache_audit_rate, tenant.cache_sampled) == (0.02, True)
    assert (
        parse_policy(with_cache({"audit_rate": 1}), catalogue()).tenants["acme"].cache_audit_rate
        == 1.0
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1.5, r"tenants\.acme\.cache\.audit_rate must be within \[0, 1\], not 1\.5"),
        (-0.1, r"audit_rate must be within \[0, 1\]"),
        (float("nan"), r"audit_rate must be within \[0, 1\]"),
        ("often", r"audit_rate must be a number"),
        (True, r"audit_rate must be a number"),
    ],
)
def test_a_bad_rate_names_the_field(value: object, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(with_cache({"audit_rate": value}), catalogue())


def test_unknown_cache_settings_are_refused() -> None:
    with pytest.raises(
        PolicyError, match=r"accepts only 'sampled: true\|false', 'audit_rate: <0..1>' and 'shadow"
    ):
        parse_policy(with_cache({"audit": 0.1}), catalogue())


def test_shadow_checks_are_on_unless_the_tenant_turns_them_off() -> None:
    assert parse_policy(policy_doc(), catalogue()).tenants["acme"].cache_shadow_checks
    off = parse_policy(with_cache({"shadow_checks": False}), catalogue())
    assert not off.tenants["acme"].cache_shadow_checks


def test_shadow_checks_must_be_a_boolean() -> None:
    with pytest.raises(PolicyError, match=r"tenants\.acme\.cache\.shadow_checks must be true or"):
        parse_policy(with_cache({"shadow_checks": "yes"}), catalogue())

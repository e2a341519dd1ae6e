"""The tenant's bound on wrong cache hits (`cache: {max_wrong_rate: ...}`): unset by default,
a share strictly between 0 and 1, validated at start-up."""

import pytest

from services.router.policy import PolicyError, parse_policy
from tests.unit.router.fixtures import catalogue, policy_doc


def with_cache(cache: object) -> dict:
    doc = policy_doc()
    doc["tenants"]["acme"]["cache"] = cache
    return doc


def test_no_bound_unless_the_tenant_sets_one() -> None:
    assert parse_policy(policy_doc(), catalogue()).tenants["acme"].cache_max_wrong_rate is None
    tenant = parse_policy(with_cache({"max_wrong_rate": 0.01}), catalogue()).tenants["acme"]
    assert tenant.cache_max_wrong_rate == 0.01


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, r"tenants\.acme\.cache\.max_wrong_rate must be within \(0, 1\), e\.g\. 0\.01, not 0"),
        (1, r"max_wrong_rate must be within \(0, 1\)"),
        (-0.01, r"max_wrong_rate must be within \(0, 1\)"),
        (float("nan"), r"max_wrong_rate must be within \(0, 1\)"),
        ("1%", r"max_wrong_rate must be a number"),
        (True, r"max_wrong_rate must be a number"),
    ],
)
def test_a_bad_bound_names_the_field(value: object, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(with_cache({"max_wrong_rate": value}), catalogue())


def test_the_cache_block_names_the_bound_among_its_fields() -> None:
    with pytest.raises(PolicyError, match=r"'max_wrong_rate: <0\.\.1, exclusive>'"):
        parse_policy(with_cache({"max_wrong": 0.01}), catalogue())

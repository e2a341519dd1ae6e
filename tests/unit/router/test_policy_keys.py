"""API keys belong to one tenant: a digest listed under two tenants is a policy error."""

import copy
import hashlib
from pathlib import Path

import pytest
import yaml

from services.router.policy import PolicyError, load_policy, parse_policy
from services.router.rollout import PolicySelector, Rollout, RolloutMode
from tests.unit.router.fixtures import catalogue, policy_doc

ACME_DIGEST = hashlib.sha256(b"acme-key").hexdigest()


def shared_key_doc(digest: str = ACME_DIGEST) -> dict:
    doc = copy.deepcopy(policy_doc())
    doc["tenants"]["other"]["api_key_sha256"].append(digest)
    return doc


def test_two_tenants_with_one_key_are_refused_naming_both() -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy(shared_key_doc(), catalogue())
    message = str(raised.value)
    assert "'acme'" in message and "'other'" in message
    assert ACME_DIGEST[:8] in message
    assert ACME_DIGEST not in message, "the full digest stays out of the message"


def test_the_same_digest_in_another_case_is_the_same_key() -> None:
    with pytest.raises(PolicyError, match="'acme' and 'other'"):
        parse_policy(shared_key_doc(ACME_DIGEST.upper()), catalogue())


def test_one_tenant_listing_its_key_twice_is_harmless() -> None:
    doc = copy.deepcopy(policy_doc())
    doc["tenants"]["acme"]["api_key_sha256"].append(ACME_DIGEST)
    assert parse_policy(doc, catalogue()).authenticate("acme-key").tenant_id == "acme"


def test_a_candidate_policy_is_checked_on_its_own(tmp_path: Path) -> None:
    """Digests are per policy: the candidate may hold the live policy's keys (for the same or a
    renamed tenant), but not one key under two of its own tenants."""
    renamed = copy.deepcopy(policy_doc())
    renamed["version"] = "test-2"
    renamed["tenants"]["acme-v2"] = renamed["tenants"].pop("acme")
    candidate = parse_policy(renamed, catalogue())
    selector = PolicySelector(
        parse_policy(policy_doc(), catalogue()), Rollout(candidate, RolloutMode.SHADOW)
    )
    assert [p.authenticate("acme-key").tenant_id for p in selector.policies] == ["acme", "acme-v2"]
    bad = tmp_path / "candidate.yaml"
    bad.write_text(yaml.safe_dump(shared_key_doc()))
    with pytest.raises(PolicyError, match=rf"{bad}: tenants 'acme' and 'other'"):
        load_policy(bad, catalogue())

"""The start hint names a key the served policy really accepts, or says that none is known."""

from __future__ import annotations

import hashlib
from pathlib import Path

from shared.cli.keys import DEFAULT_POLICY, key_hint
from shared.cli.replay import REPLAY_POLICY


def policy(tmp_path: Path, tenants: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(f"version: test\ntenants:\n{tenants}")
    return path


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_the_default_policy_gives_the_dev_key() -> None:
    hint = key_hint({})
    assert (hint.policy, hint.tenant, hint.key) == (DEFAULT_POLICY, "dev", "dev")
    assert hint.describe() == "Try it (API key `dev`, tenant `dev`):"


def test_the_replay_policy_gives_its_own_key_not_dev() -> None:
    hint = key_hint({"SLUICE_ROUTER_POLICY": str(REPLAY_POLICY)})
    assert (hint.tenant, hint.key) == ("routerbench", "routerbench")


def test_a_policy_without_a_known_key_says_so(tmp_path: Path) -> None:
    path = policy(tmp_path, f"  acme:\n    api_key_sha256: [{digest('s3cret')}]\n")
    hint = key_hint({"SLUICE_ROUTER_POLICY": str(path)})
    assert hint.key == ""
    assert "No API key to suggest" in hint.describe() and "SLUICE_API_KEY" in hint.describe()
    assert "dev" not in hint.describe()


def test_the_key_in_sluice_api_key_is_named_when_the_policy_accepts_it(tmp_path: Path) -> None:
    path = policy(tmp_path, f"  acme:\n    api_key_sha256: [{digest('s3cret')}]\n")
    hint = key_hint({"SLUICE_ROUTER_POLICY": str(path), "SLUICE_API_KEY": "s3cret"})
    assert (hint.tenant, hint.key) == ("acme", "s3cret")


def test_an_unreadable_policy_is_named(tmp_path: Path) -> None:
    hint = key_hint({"SLUICE_ROUTER_POLICY": str(tmp_path / "missing.yaml")})
    assert hint.key == "" and "missing.yaml" in hint.describe()

"""Which API key the start hint of `sluice up` can show: one the served policy really accepts.

Policies store keys only as SHA-256 digests, so a key can be named only when it is known from
elsewhere: a tenant whose key is its own name (`dev` in the default policy, `routerbench` in the
replay one), or the key in SLUICE_API_KEY, which `sluice ask` sends too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_POLICY = REPO / "services" / "router" / "policies" / "default.yaml"
DEFAULT_QUESTION = "What is the capital of France?"


@dataclass(frozen=True)
class KeyHint:
    policy: Path
    tenant: str = ""
    key: str = ""
    question: str = DEFAULT_QUESTION
    problem: str = ""

    def describe(self) -> str:
        if self.key:
            return f"Try it (API key `{self.key}`, tenant `{self.tenant}`):"
        if self.problem:
            return f"No API key to suggest: {self.problem}."
        return (
            f"No API key to suggest: {self.policy} stores its keys as SHA-256 digests and none "
            "is a tenant's own name; set SLUICE_API_KEY to yours, or pass --api-key."
        )


def served_policy(env: Mapping[str, str]) -> Path:
    """The policy file the router will load (services/router/config.py reads the same variable)."""
    configured = env.get("SLUICE_ROUTER_POLICY", "").strip()
    return Path(configured) if configured else DEFAULT_POLICY


def key_hint(env: Mapping[str, str], question: str = DEFAULT_QUESTION) -> KeyHint:
    """A key of the served policy, known to work, with a question to ask."""
    policy = served_policy(env)
    try:
        document = yaml.safe_load(policy.read_text())
    except (OSError, yaml.YAMLError) as error:
        return KeyHint(policy, problem=f"cannot read the policy {policy} ({error})")
    tenants = document.get("tenants") if isinstance(document, dict) else None
    if not isinstance(tenants, dict):
        return KeyHint(policy, problem=f"the policy {policy} has no tenants")
    candidates = [k for k in (env.get("SLUICE_API_KEY", ""),) if k]
    for tenant, spec in tenants.items():
        digests = _digests(spec)
        for key in (*candidates, str(tenant)):
            if hashlib.sha256(key.encode()).hexdigest() in digests:
                return KeyHint(policy, str(tenant), key, question)
    return KeyHint(policy)


def _digests(spec: Any) -> set[str]:
    raw = spec.get("api_key_sha256", []) if isinstance(spec, dict) else []
    return {str(d).lower() for d in (raw if isinstance(raw, list) else [raw])}

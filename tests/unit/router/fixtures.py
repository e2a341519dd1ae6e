"""Shared builders for router unit tests."""

from __future__ import annotations

import hashlib
from typing import Any

from services.router.admission import Admission, Asked
from services.router.model import ChatRequest
from services.router.policy import Policy, parse_policy
from shared.chat import Role, Sampling, Turn
from shared.pricing import PriceCatalogue, parse_catalogue
from shared.tokens import TokenCounter

CATALOGUE_DOC = {
    "models": {
        "cheap": {"input": 0.1, "output": 0.2},
        "mid": {"input": 1.0, "output": 2.0},
        "top": {"input": 10.0, "output": 30.0},
    }
}


def catalogue() -> PriceCatalogue:
    return parse_catalogue(CATALOGUE_DOC)


def policy_doc() -> dict:
    return {
        "version": "test-1",
        "tenants": {
            "acme": {
                "api_key_sha256": [hashlib.sha256(b"acme-key").hexdigest()],
                "baseline_model": "top",
                "model_classes": {
                    "chat": {
                        "max_tokens": 64,
                        "tiers": [
                            {"model": "cheap", "gates": ["finish_reason", "refusal"]},
                            {"model": "mid", "gates": ["finish_reason", "refusal"]},
                            {"model": "top", "gates": ["finish_reason"]},
                        ],
                    }
                },
            },
            "other": {
                "api_key_sha256": [hashlib.sha256(b"other-key").hexdigest()],
                "baseline_model": "top",
                "model_classes": {"chat": {"tiers": [{"model": "cheap"}]}},
            },
        },
    }


def policy() -> Policy:
    return parse_policy(policy_doc(), catalogue())


def admit_acme(doc: dict[str, Any], question: str) -> ChatRequest:
    """One request of tenant acme (key "acme-key") under the policy `doc`, asking `question`."""
    return Admission(parse_policy(doc, catalogue()), TokenCounter(), 10_000).admit(
        "acme-key",
        Asked(
            request_id="r1",
            model_class="",
            turns=(Turn(Role.USER, question),),
            sampling=Sampling(),
            cache_mode=None,
            max_cost_nano_usd=0,
        ),
    )

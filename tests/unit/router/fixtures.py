"""Shared builders for router unit tests."""

from __future__ import annotations

import hashlib

from services.router.policy import Policy, parse_policy
from shared.pricing import PriceCatalogue, parse_catalogue

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

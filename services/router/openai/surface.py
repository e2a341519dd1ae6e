"""Which chat-completions request fields the front door honours, and which it turns away.

Nothing is dropped silently: a field Sluice cannot carry to the provider, or whose effect it
cannot keep (a cached or cheaper tier's answer would break the promise), is a 400 naming it.
The README's "supported / rejected" table lists the same fields; a test walks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.router.admission_checks import bad
from shared.errors import quoted

HONOURED = frozenset(
    {
        "messages", "model", "frequency_penalty", "presence_penalty", "logprobs", "top_logprobs",
        "max_completion_tokens", "max_tokens", "metadata", "n", "parallel_tool_calls",
        "response_format", "seed", "stop", "stream", "stream_options", "temperature", "top_p",
        "tool_choice", "tools", "user", "safety_identifier", "modalities", "service_tier",
        "store", "sluice",
    }
)  # fmt: skip
_NOT_HERE = "is not supported by this gateway"
# Any value but null is refused, with the reason.
REFUSED = {
    "audio": f"{_NOT_HERE}: it answers in text only",
    "functions": "is deprecated and not supported; use tools",
    "function_call": "is deprecated and not supported; use tool_choice",
    "logit_bias": (
        f"{_NOT_HERE}: token ids differ between the models of a cascade, so a bias cannot be "
        "carried to every tier"
    ),
    "moderation": f"{_NOT_HERE}: it runs no moderation of its own",
    "prediction": f"{_NOT_HERE}: predicted outputs are not passed to the providers",
    "prompt_cache_key": f"{_NOT_HERE}: provider prompt caching is keyed by the gateway",
    "prompt_cache_options": f"{_NOT_HERE}: provider prompt caching is keyed by the gateway",
    "prompt_cache_retention": f"{_NOT_HERE}: provider prompt caching is keyed by the gateway",
    "reasoning_effort": f"{_NOT_HERE}: its tiers are not all reasoning models",
    "verbosity": f"{_NOT_HERE}: its tiers are not all models that take it",
    "web_search_options": f"{_NOT_HERE}: its tiers do not search the web",
}
# Values that ask for nothing beyond what Sluice does anyway; anything else is refused.
_NEUTRAL = {
    "modalities": (["text"],),
    "service_tier": ("auto", "default"),
    "store": (False,),
}


def _neutral(key: str, value: Any) -> bool:
    # Compared with their types: `0` is not `false`.
    return any(type(value) is type(v) and value == v for v in _NEUTRAL[key])


def check_surface(body: Mapping[str, Any]) -> None:
    """Refuses unknown fields, refused fields and values of partly honoured ones that ask for
    what Sluice does not do."""
    for key, value in body.items():
        if key in REFUSED:
            if value is not None:
                raise bad(key, REFUSED[key])
        elif key not in HONOURED:
            raise bad(key[:64], "is not a chat-completions parameter; unknown fields are refused")
        elif key in _NEUTRAL and value is not None and not _neutral(key, value):
            allowed = " or ".join(repr(v) for v in _NEUTRAL[key])
            raise bad(key, f"{quoted(value)} {_NOT_HERE}; only {allowed}")

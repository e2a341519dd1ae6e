"""Plausible token logprobs for simulated answers, when a request asks for them.

A "token" here is one word with its trailing space (the pieces a stream sends are whole
words), which is enough for a gateway that summarises them. Values are seeded by the model, the
prompt and the answer, so a request gets the same logprobs every time. `top_logprobs` lists the
token itself first, then common tokens at lower, made-up logprobs. A confident answer's
tokens sit close to 0 (mean about -0.13); an answer a rule marks `unsure` gets low ones (mean
about -1.5), as a model guessing would.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from services.simulator.wire import stream_pieces

CONFIDENT_RANGE = (-0.25, -0.005)
UNSURE_RANGE = (-2.5, -0.6)
# Stand-in alternatives for `top_logprobs`: common tokens, at least MAX_TOP_LOGPROBS of them.
_ALTERNATIVES = tuple(
    [
        " the",
        " a",
        " an",
        " and",
        " of",
        " to",
        " in",
        " is",
        " it",
        " that",
        " this",
        " for",
        " on",
        " with",
        " as",
        " be",
        " by",
        " or",
        " not",
        " are",
        " was",
        ".",
        ",",
        " but",
        " so",
    ]
)


def token_logprobs(model: str, prompt: str, text: str, unsure: bool) -> list[tuple[str, float]]:
    """(token, logprob) for every word of text, in order; the tokens concatenate to text."""
    seed = hashlib.sha256(f"{model}\0{prompt}\0{text}".encode()).digest()
    rng = random.Random(int.from_bytes(seed[:8], "big"))
    low, high = UNSURE_RANGE if unsure else CONFIDENT_RANGE
    tokens = [t for t in stream_pieces(text, words_per_piece=1) if t]
    return [(token, round(rng.uniform(low, high), 4)) for token in tokens]


def _alternatives(token: str, value: float, count: int) -> list[dict[str, Any]]:
    """count likeliest tokens at this position: the token itself, then less likely ones."""
    if count == 0:
        return []
    seed = hashlib.sha256(f"{token}\0{value}".encode()).digest()
    rng = random.Random(int.from_bytes(seed[:8], "big"))
    others = rng.sample([t for t in _ALTERNATIVES if t != token], count - 1)
    entries = [(token, value)]
    for other in others:
        entries.append((other, round(entries[-1][1] - rng.uniform(0.3, 1.5), 4)))
    return [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in entries]


def logprobs_json(
    entries: list[tuple[str, float]], top: int = 0, refusal: bool = False
) -> dict[str, Any]:
    """OpenAI's `choices[].logprobs` object for these tokens, each with its `top` likeliest
    alternatives; a refusal's tokens go under `refusal` instead of `content`."""
    tokens = [
        {
            "token": token,
            "logprob": value,
            "bytes": list(token.encode()),
            "top_logprobs": _alternatives(token, value, top),
        }
        for token, value in entries
    ]
    return {"content": None, "refusal": tokens} if refusal else {"content": tokens, "refusal": None}
